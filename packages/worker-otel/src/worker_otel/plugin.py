"""The ``otel`` plugin (entry point ``worker.plugins``): registers :class:`~worker_otel.OTelTracer` as ``"otel"``.

The factory takes no arguments and uses the global tracer provider and propagator, so an application
that configured OpenTelemetry once (``trace.set_tracer_provider(...)``) selects tracing by name.
"""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl
from worker_core.registry import Registry

from .tracing import OTelTracer

__all__ = ("TRACER_NAME", "worker_register_tracers")

#: The name the tracer factory is registered under.
TRACER_NAME = "otel"


@hookimpl
def worker_register_tracers(registry: Registry[Any]) -> None:
    """Register the OpenTelemetry tracer factory under ``"otel"``."""
    registry.add(TRACER_NAME, OTelTracer, owner="worker-otel")
