"""The ``otel`` plugin (entry point ``worker.plugins``): tracing and metrics selected by name.

- Tracer ``"otel"``: :class:`~worker_otel.OTelTracer`, built with no arguments, uses the global tracer
  provider and propagator, so an application that configured OpenTelemetry once
  (``trace.set_tracer_provider(...)``) selects tracing by name.
- Instrumentation ``"otel"``: :func:`~worker_otel.set_meter_provider` as a binder, so
  ``tm.use_plugin_instrumentation("otel", provider=meter_provider)`` exports the nine instruments
  (``provider=None`` unbinds; other keyword options are those of ``set_meter_provider``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.metrics import MeterProvider
from worker_core import TaskManager
from worker_core.hookspecs import hookimpl
from worker_core.registry import Registry

from .metrics import set_meter_provider
from .tracing import OTelTracer

__all__ = (
    "INSTRUMENTATION_NAME",
    "TRACER_NAME",
    "bind_metrics",
    "worker_register_instrumentation",
    "worker_register_tracers",
)

#: The name the tracer factory is registered under.
TRACER_NAME = "otel"
#: The name the metrics binder is registered under.
INSTRUMENTATION_NAME = "otel"


def bind_metrics(manager: TaskManager, provider: MeterProvider | None = None, **options: Any) -> None:
    """The ``"otel"`` instrumentation binder: ``set_meter_provider(manager, provider, **options)``.

    Raises:
        ConfigurationError: as :func:`~worker_otel.set_meter_provider`.
    """
    set_meter_provider(manager, provider, **options)


@hookimpl
def worker_register_tracers(registry: Registry[Any]) -> None:
    """Register the OpenTelemetry tracer factory under ``"otel"``."""
    registry.add(TRACER_NAME, OTelTracer, owner="worker-otel")


@hookimpl
def worker_register_instrumentation(registry: Registry[Any]) -> None:
    """Register the OpenTelemetry metrics binder under ``"otel"``."""
    registry.add(INSTRUMENTATION_NAME, bind_metrics, owner="worker-otel")
