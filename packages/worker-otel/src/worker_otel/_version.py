from __future__ import annotations

from importlib.metadata import version

#: The installed distribution's version (also the default instrumentation scope version).
VERSION = version("worker-otel")
