"""worker-otel: OpenTelemetry metrics and tracing for worker-core's TaskManager."""

from __future__ import annotations

from . import semconv as semconv
from ._version import VERSION as __version__
from .metrics import set_meter_provider as set_meter_provider
from .tracing import OTelTracer as OTelTracer

__all__ = ("OTelTracer", "__version__", "semconv", "set_meter_provider")
