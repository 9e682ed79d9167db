from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.metrics import CallbackT, Meter, ObservableGauge
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from otel_helpers import attrs, collect, manager, until
from worker_core import ConfigurationError, Task, TaskContext, TaskStatus
from worker_otel import semconv, set_meter_provider

NINE = {
    "tasks_scheduled_total",
    "tasks_running",
    "tasks_completed_total",
    "tasks_failed_total",
    "tasks_cancelled_total",
    "tasks_retried_total",
    "results_dropped_total",
    "queue_depth",
    "task_latency_seconds",
}


async def ok(ctx: TaskContext) -> str:
    return "ok"


async def always_fails(ctx: TaskContext) -> None:
    raise ValueError("always")


async def fails_once(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise ValueError("first attempt")
    return "second"


async def test_each_instrument_after_a_known_mix(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    started = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        started.set()
        await asyncio.Event().wait()

    async with manager(max_workers=2) as tm:
        set_meter_provider(tm, meter_provider)
        unread = tm.subscribe_results(buffer=1)  # never read: 1 result kept, the other 6 dropped
        for _ in range(3):
            await tm.register_task(Task(ok))
        hanging = Task(hang)
        await tm.register_task(hanging)
        await tm.register_task(Task(always_fails, queue="emails", retries=2))
        await tm.register_task(Task(fails_once, queue="emails"))
        await tm.register_task(Task(fails_once, queue="emails", retries=0))
        await started.wait()
        await tm.cancel_task(hanging.id)
        await tm.wait(10)
        got = collect(metric_reader)
        snapshot = tm.metrics()
        unread.close()

    default, emails = attrs(queue="default"), attrs(queue="emails")
    assert set(got) == NINE
    assert got["tasks_scheduled_total"] == {default: 4, emails: 3}
    assert got["tasks_completed_total"] == {default: 3, emails: 1}
    assert got["tasks_failed_total"] == {default: 0, emails: 2}
    assert got["tasks_cancelled_total"] == {default: 1, emails: 0}
    assert got["tasks_retried_total"] == {default: 0, emails: 3}  # always_fails twice, fails_once once
    assert got["results_dropped_total"] == {frozenset(): 6}
    assert got["tasks_running"] == {frozenset(): 0}
    assert got["queue_depth"] == {frozenset(): 0}
    latency = got["task_latency_seconds"]
    assert set(latency) == {default, emails}
    assert (latency[default][0], latency[emails][0]) == (4, 3)  # every task here started
    assert 0 < latency[default][1] + latency[emails][1] <= snapshot.latency_total + 1e-9
    # The per-queue series add up to the manager's own counters.
    totals = (snapshot.scheduled, snapshot.completed, snapshot.failed, snapshot.cancelled, snapshot.retried)
    assert totals == (7, 4, 2, 1, 3)
    assert snapshot.results_dropped == 6


async def test_gauges_read_running_and_waiting_tasks(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    release = asyncio.Event()

    async def blocked(ctx: TaskContext) -> None:
        await release.wait()

    async with manager(max_workers=1) as tm:
        set_meter_provider(tm, meter_provider)
        for _ in range(3):
            await tm.register_task(Task(blocked))
        await until(lambda: tm.metrics().running == 1)
        got = collect(metric_reader)
        assert got["tasks_running"] == {frozenset(): 1}
        assert got["queue_depth"] == {frozenset(): 2}
        release.set()
        await tm.wait(10)
        got = collect(metric_reader)
    assert got["tasks_running"] == {frozenset(): 0}
    assert got["queue_depth"] == {frozenset(): 0}
    assert got["tasks_completed_total"] == {attrs(queue="default"): 3}


async def test_queued_task_cancelled_before_start_records_no_latency(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async with manager(max_workers=1) as tm:
        set_meter_provider(tm, meter_provider)
        release = asyncio.Event()

        async def blocked(ctx: TaskContext) -> None:
            await release.wait()

        await tm.register_task(Task(blocked))
        await until(lambda: tm.metrics().running == 1)
        waiting = Task(ok, queue="later")
        await tm.register_task(waiting)
        await tm.cancel_task(waiting.id)
        release.set()
        await tm.wait(10)
        got = collect(metric_reader)
    assert waiting.status is TaskStatus.CANCELLED
    assert got["tasks_cancelled_total"][attrs(queue="later")] == 1
    assert attrs(queue="later") not in got["task_latency_seconds"]


async def test_deadline_exceeded_counts_as_failed(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async def slow(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    async with manager(max_retries=0) as tm:
        set_meter_provider(tm, meter_provider)
        task = Task(slow, timeout=0.01)
        await tm.register_task(task)
        await tm.wait(10)
        got = collect(metric_reader)
    assert task.status is TaskStatus.DEADLINE_EXCEEDED
    assert got["tasks_failed_total"] == {attrs(queue="default"): 1}


async def test_instruments_have_go_worker_kinds_units_and_scope(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async with manager() as tm:
        set_meter_provider(tm, meter_provider, meter_name="my.scope", meter_version="9.9")
        await tm.register_task(Task(ok))
        await tm.wait(10)
    data = metric_reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    assert (scope.scope.name, scope.scope.version) == ("my.scope", "9.9")
    kinds = {m.name: (type(m.data).__name__, getattr(m.data, "is_monotonic", None), m.unit) for m in scope.metrics}
    assert kinds == {
        "tasks_scheduled_total": ("Sum", True, ""),
        "tasks_running": ("Gauge", None, ""),
        "tasks_completed_total": ("Sum", True, ""),
        "tasks_failed_total": ("Sum", True, ""),
        "tasks_cancelled_total": ("Sum", True, ""),
        "tasks_retried_total": ("Sum", True, ""),
        "results_dropped_total": ("Sum", True, ""),
        "queue_depth": ("Gauge", None, ""),
        "task_latency_seconds": ("Histogram", None, "s"),
    }
    descriptions = {m.name: m.description for m in scope.metrics}
    assert descriptions == semconv.DESCRIPTIONS
    (histogram,) = (m for m in scope.metrics if m.name == "task_latency_seconds")
    (point,) = histogram.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == semconv.LATENCY_BUCKETS_S


async def test_default_scope_is_this_package(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    import worker_otel

    set_meter_provider(manager(), meter_provider, meter_name="")
    data = metric_reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    assert (scope.scope.name, scope.scope.version) == ("worker_otel", worker_otel.__version__)


async def test_none_disables_and_silences_the_old_callbacks(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async with manager() as tm:
        set_meter_provider(tm, meter_provider)
        await tm.register_task(Task(ok))
        await tm.wait(10)
        assert collect(metric_reader)["tasks_completed_total"] == {attrs(queue="default"): 1}
        set_meter_provider(tm, None)
        await tm.register_task(Task(ok))
        await tm.wait(10)
        got = collect(metric_reader)
        assert tm.metrics().completed == 2
    # Observable instruments report nothing any more; the histogram keeps its one old point, no new one.
    assert set(got) == {"task_latency_seconds"}
    assert got["task_latency_seconds"][attrs(queue="default")][0] == 1
    set_meter_provider(tm, None)  # disabling twice is harmless


async def test_replacing_the_provider_moves_every_instrument(meter_provider: MeterProvider) -> None:
    old_reader = InMemoryMetricReader()
    old = MeterProvider(metric_readers=[old_reader], shutdown_on_exit=False)
    new_reader = InMemoryMetricReader()
    new = MeterProvider(metric_readers=[new_reader], shutdown_on_exit=False)
    try:
        async with manager() as tm:
            set_meter_provider(tm, old)
            await tm.register_task(Task(ok))
            await tm.wait(10)
            set_meter_provider(tm, new)
            await tm.register_task(Task(ok, queue="q2"))
            await tm.wait(10)
            old_got, new_got = collect(old_reader), collect(new_reader)
    finally:
        old.shutdown()
        new.shutdown()
    assert set(old_got) == {"task_latency_seconds"}
    assert attrs(queue="q2") not in old_got["task_latency_seconds"]
    assert set(new_got) == NINE
    # Counting starts when a provider is set (the start time the SDK reports for the series).
    assert new_got["tasks_completed_total"] == {attrs(queue="q2"): 1}
    assert new_got["task_latency_seconds"][attrs(queue="q2")][0] == 1


class _FailingProvider(MeterProvider):
    """A real SDK provider whose meter refuses to create ``queue_depth`` (after creating the others)."""

    def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None, *a: Any) -> Meter:
        meter = super().get_meter(name, version, schema_url, *a)
        create = meter.create_observable_gauge

        def refuse(
            name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
        ) -> ObservableGauge:
            if name == "queue_depth":
                raise RuntimeError("exporter does not like this name")
            return create(name, callbacks, unit, description)

        meter.create_observable_gauge = refuse  # type: ignore[method-assign]
        return meter


async def test_instrument_creation_error_is_typed_and_keeps_the_old_provider(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    failing_reader = InMemoryMetricReader()
    failing = _FailingProvider(metric_readers=[failing_reader], shutdown_on_exit=False)
    try:
        async with manager() as tm:
            set_meter_provider(tm, meter_provider)
            with pytest.raises(ConfigurationError, match="create queue_depth") as info:
                set_meter_provider(tm, failing)
            assert isinstance(info.value.__cause__, RuntimeError)
            await tm.register_task(Task(ok))
            await tm.wait(10)
            assert collect(metric_reader)["tasks_completed_total"] == {attrs(queue="default"): 1}
            # The instruments created before the failure (tasks_running among them) stay silent.
            assert collect(failing_reader) == {}
    finally:
        failing.shutdown()


async def test_without_the_latency_histogram_the_other_eight_remain(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async with manager() as tm:
        set_meter_provider(tm, meter_provider, latency_histogram=False)
        await tm.register_task(Task(ok))
        await tm.wait(10)
        got = collect(metric_reader)
    assert set(got) == NINE - {"task_latency_seconds"}
    assert got["tasks_completed_total"] == {attrs(queue="default"): 1}


def test_a_provider_does_not_keep_the_manager_alive(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    tm = manager()
    set_meter_provider(tm, meter_provider)
    assert "tasks_running" in collect(metric_reader)
    gone = weakref.ref(tm)
    del tm
    gc.collect()
    assert gone() is None
    assert "tasks_running" not in collect(metric_reader)  # the callbacks still run, with no manager to read


async def test_bad_arguments_are_configuration_errors(meter_provider: MeterProvider) -> None:
    bad: Any = object()
    with pytest.raises(ConfigurationError, match="TaskManager"):
        set_meter_provider(bad, meter_provider)
    tm = manager()
    with pytest.raises(ConfigurationError, match="MeterProvider"):
        set_meter_provider(tm, bad)
    with pytest.raises(ConfigurationError, match="meter_name"):
        set_meter_provider(tm, meter_provider, meter_name=bad)
