from __future__ import annotations

from importlib.metadata import entry_points

import worker_otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otel_helpers import attrs, collect, manager
from worker_core import Plugins, Task, TaskContext, TaskStatus
from worker_otel import OTelTracer, plugin, semconv


async def ok(ctx: TaskContext) -> None:
    return None


def test_the_otel_entry_point_names_the_plugin_module() -> None:
    (ep,) = (ep for ep in entry_points(group="worker.plugins") if ep.name == "otel")
    assert ep.value == "worker_otel.plugin"
    assert ep.load() is plugin


def others() -> list[str]:
    """Other installed plugins: blocked so that this package is tested alone."""
    return [ep.name for ep in entry_points(group="worker.plugins") if ep.name != "otel"]


def test_installed_plugins_register_the_otel_tracer_factory() -> None:
    plugins = Plugins(autoload=True, disabled=others())
    assert "otel" in plugins.names()
    assert plugins.tracers().get("otel") is OTelTracer


def test_a_disabled_plugin_registers_nothing() -> None:
    plugins = Plugins(autoload=True, disabled=[*others(), "otel"])
    assert "otel" not in plugins.tracers()


async def test_the_registered_factory_builds_a_working_tracer_without_arguments() -> None:
    plugins = Plugins(autoload=False, builtins=())
    plugins.register(plugin, name="otel")
    tracer = plugins.tracers().get("otel")()
    assert isinstance(tracer, OTelTracer)
    async with manager() as tm:
        tm.set_tracer(tracer)  # the global (here: no-op) provider; the task runs as usual
        task = Task(ok)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.COMPLETED


def test_installed_plugins_register_the_otel_metrics_binder() -> None:
    plugins = Plugins(autoload=True, disabled=others())
    assert plugins.instrumentation().get("otel") is plugin.bind_metrics


async def test_use_plugin_instrumentation_otel_exports_the_metrics_and_none_unbinds(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    plugins = Plugins(autoload=False, builtins=())
    plugins.register(plugin, name="otel")
    async with manager(plugins=plugins) as tm:
        tm.use_plugin_instrumentation("otel", provider=meter_provider, latency_histogram=False)
        await tm.register_task(Task(ok, queue="q"))
        await tm.wait(10)
        assert collect(metric_reader)[semconv.METRIC_TASKS_COMPLETED] == {attrs(queue="q"): 1}
        tm.use_plugin_instrumentation("otel", provider=None)
        await tm.register_task(Task(ok, queue="q"))
        await tm.wait(10)
    assert not collect(metric_reader).get(semconv.METRIC_TASKS_COMPLETED)  # unbound: reports nothing


def test_public_api_is_a_complete_tuple() -> None:
    assert isinstance(worker_otel.__all__, tuple)
    public = {name for name in dir(worker_otel) if not name.startswith("_")} - {
        "annotations",
        "metrics",
        "plugin",
        "tracing",
    }
    assert public == set(worker_otel.__all__) - {"__version__"}
    for module in (worker_otel.semconv, plugin):
        assert isinstance(module.__all__, tuple)
        assert all(hasattr(module, name) for name in module.__all__)
