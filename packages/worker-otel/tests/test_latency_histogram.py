"""task_latency_seconds: one public ``Histogram.record`` per finished task, on the real SDK.

Expected values come from a second instrumentation on the same manager that logs the exact latencies
the manager reports, so bucket counts, count, sum, min and max are compared exactly.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricReader,
)
from opentelemetry.sdk.metrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from otel_helpers import manager, until
from worker_core import Task, TaskContext, TaskManager, TaskStatus
from worker_core.durable.handlers import DurableHandlerSpec
from worker_core.durable.types import DurableTask
from worker_core.testing.memory import InMemoryDurableBackend
from worker_otel import metrics, semconv, set_meter_provider

CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
BOUNDS = semconv.LATENCY_BUCKETS_S
Attrs = frozenset[tuple[str, Any]]
#: (bucket counts, count, sum, min, max) of one series.
Summary = tuple[tuple[int, ...], int, float, float, float]


class LatencyLog:
    """An instrumentation beside worker-otel's: the latencies the manager reports, in order."""

    def __init__(self) -> None:
        self.samples: list[tuple[Attrs, float]] = []
        self.first_ns = 0

    def on_finish(self, task: Task[Any], status: TaskStatus, latency_s: float | None) -> None:
        if latency_s is None:
            return
        if not self.first_ns:
            self.first_ns = time.time_ns()
        attributes = {"queue": task.queue, "handler": task.name} if task.durable else {"queue": task.queue}
        self.samples.append((frozenset(attributes.items()), latency_s))


def expected(samples: Sequence[tuple[Attrs, float]], keep: Sequence[str] | None = None) -> dict[Attrs, Summary]:
    """What record() would aggregate: per series, buckets by bisect_left, the sum added in order."""
    series: dict[Attrs, list[float]] = {}
    for attributes, latency in samples:
        key = attributes if keep is None else frozenset((k, v) for k, v in attributes if k in keep)
        series.setdefault(key, []).append(latency)
    out: dict[Attrs, Summary] = {}
    for key, values in series.items():
        counts = [0] * (len(BOUNDS) + 1)
        total = 0.0
        for value in values:
            counts[bisect_left(BOUNDS, value)] += 1
            total += value
        out[key] = (tuple(counts), len(values), total, min(values), max(values))
    return out


def points(reader: MetricReader, name: str = "task_latency_seconds") -> dict[Attrs, HistogramDataPoint]:
    data = reader.collect() if not isinstance(reader, InMemoryMetricReader) else reader.get_metrics_data()
    out: dict[Attrs, HistogramDataPoint] = {}
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        assert isinstance(point, HistogramDataPoint)
                        out[frozenset((point.attributes or {}).items())] = point
    return out


def summaries(found: dict[Attrs, HistogramDataPoint]) -> dict[Attrs, Summary]:
    out: dict[Attrs, Summary] = {}
    for key, point in found.items():
        assert tuple(point.explicit_bounds) == BOUNDS
        out[key] = (tuple(point.bucket_counts), point.count, point.sum, point.min, point.max)
    return out


def total_count(reader: InMemoryMetricReader) -> int:
    return sum(point.count for point in points(reader).values())


def provider_for(*readers: MetricReader, views: Sequence[View] = ()) -> MeterProvider:
    return MeterProvider(metric_readers=list(readers), views=list(views), shutdown_on_exit=False)


@pytest.fixture
def providers() -> Iterator[list[MeterProvider]]:
    made: list[MeterProvider] = []
    yield made
    for provider in made:
        provider.shutdown()


async def ok(ctx: TaskContext) -> str:
    return "ok"


async def fails(ctx: TaskContext) -> None:
    raise ValueError("no")


def sleeper(seconds: float) -> Any:
    async def sleep(ctx: TaskContext) -> None:
        await asyncio.sleep(seconds)  # the task's own work: latencies past the first buckets

    return sleep


async def send(ctx: TaskContext, payload: Any) -> str:
    return "sent"


async def run_mix(tm: TaskManager, durable_tm: TaskManager, log: LatencyLog, durable: int) -> None:
    """Two in-memory queues (fast, slower and failing tasks), and durable ``send`` tasks in ``jobs``.

    A manager with a durable backend runs durable tasks only: the two kinds need two managers.
    """
    before = len(log.samples)
    for _ in range(3):
        await tm.register_task(Task(ok))
    await tm.register_task(Task(sleeper(0.012), queue="emails"))
    await tm.register_task(Task(sleeper(0.03), queue="emails"))
    await tm.register_task(Task(fails, queue="emails", retries=0))
    for n in range(durable):
        await durable_tm.register_durable_task(DurableTask("send", {"n": n}, queue="jobs"))
    await until(lambda: len(log.samples) == before + 6 + durable)


def durable_manager() -> TaskManager:
    return manager(
        durable_backend=InMemoryDurableBackend(),
        durable_handlers={"send": DurableHandlerSpec(None, send)},
        durable_poll_interval=0.01,
    )


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA], ids=["cumulative", "delta"])
async def test_buckets_count_sum_min_max_are_exact_over_two_collections(
    temporality: AggregationTemporality, providers: list[MeterProvider]
) -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    providers.append(provider := provider_for(reader))
    log = LatencyLog()
    async with manager() as tm, durable_manager() as durable_tm:
        for each in (tm, durable_tm):
            set_meter_provider(each, provider)
            assert metrics._latency_mode(each) == "recorded"
            each.add_instrumentation(log)
        await run_mix(tm, durable_tm, log, durable=2)
        first = summaries(points(reader))
        half = len(log.samples)
        await run_mix(tm, durable_tm, log, durable=1)
        second = summaries(points(reader))
        third = summaries(points(reader))  # nothing new since the second
    jobs = frozenset({("queue", "jobs"), ("handler", "send")})
    assert set(first) == {frozenset({("queue", "default")}), frozenset({("queue", "emails")}), jobs}
    assert first == expected(log.samples[:half])
    emails = first[frozenset({("queue", "emails")})]
    # The 12 ms and 30 ms sleepers are past the first boundary (5 ms) however loaded the machine is.
    assert sum(emails[0][1:]) >= 2
    if temporality is CUMULATIVE:
        assert second == third == expected(log.samples)
    else:
        assert second == expected(log.samples[half:])
        assert third == {}


async def test_boundaries_follow_bisect_left_and_invalid_latencies_are_dropped_with_a_warning(
    providers: list[MeterProvider], caplog: pytest.LogCaptureFixture
) -> None:
    # A bucket is (previous, bound]; negative, NaN and infinite latencies are dropped (the SDK would warn on
    # negatives and let an infinity into the sum).
    latencies = [0.0, 1e-6, 0.005, 0.0050000001, 0.01, 0.3, 2.5, 10.0, 10.5, 1e6, -1.0, math.nan, math.inf]
    reader = InMemoryMetricReader(preferred_temporality={Histogram: DELTA})
    providers.append(provider := provider_for(reader))
    tm = manager()
    set_meter_provider(tm, provider)
    instrumentation = metrics._BINDINGS[tm][1].instrumentation
    with caplog.at_level("WARNING", logger="worker_otel.metrics"):
        for latency in latencies:
            instrumentation.on_finish(Task(ok, queue="a"), TaskStatus.COMPLETED, latency)
    (point,) = points(reader).values()
    valid = [latency for latency in latencies if 0 <= latency < math.inf]
    counts = [0] * (len(BOUNDS) + 1)
    for latency in valid:
        counts[bisect_left(BOUNDS, latency)] += 1
    assert (tuple(point.bucket_counts), point.count, point.sum, point.min, point.max) == (
        tuple(counts),
        10,
        sum(valid),
        0.0,
        1e6,
    )
    assert point.bucket_counts[-1] == 2  # 10.5 and 1e6: past the last boundary
    dropped = [r for r in caplog.records if "not a finite non-negative number" in r.getMessage()]
    assert len(dropped) == 3
    assert instrumentation.all_series()[0].completed == len(latencies)  # the task still counts


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA], ids=["cumulative", "delta"])
async def test_a_collection_in_another_thread_while_tasks_run_loses_no_sample(
    temporality: AggregationTemporality, providers: list[MeterProvider]
) -> None:
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    providers.append(provider := provider_for(reader))
    stop = threading.Event()
    seen: list[int] = []

    def collect_until_stopped() -> None:
        while not stop.is_set():
            seen.append(total_count(reader))

    n = 6000
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the GIL back and forth often: swaps land inside on_finish updates
    collector = threading.Thread(target=collect_until_stopped)
    try:
        async with manager(max_tasks=n, max_workers=8) as tm:
            set_meter_provider(tm, provider)
            assert metrics._latency_mode(tm) == "recorded"
            collector.start()
            for index in range(n):
                await tm.register_task(Task(ok, queue=f"q{index % 3}"))
            await tm.wait(30)
            finished = tm.metrics().completed
    finally:
        stop.set()
        if collector.is_alive():
            collector.join()
        sys.setswitchinterval(switch)
    last = total_count(reader)
    assert finished == n
    assert len(seen) > 2  # the collector did run while tasks finished
    if temporality is CUMULATIVE:
        assert seen == sorted(seen)
        assert last == n
    else:
        assert sum(seen) + last == n


async def test_samples_before_the_provider_is_removed_reach_it_and_none_after(providers: list[MeterProvider]) -> None:
    reader = InMemoryMetricReader()
    providers.append(provider := provider_for(reader))
    async with manager() as tm:
        set_meter_provider(tm, provider)
        for _ in range(5):
            await tm.register_task(Task(ok))
        await tm.wait(10)
        set_meter_provider(tm, None)  # not collected yet: the five samples are in the SDK's storage
        await tm.register_task(Task(ok))
        await tm.wait(10)
    assert total_count(reader) == 5
    assert metrics._latency_mode(tm) is None


async def test_two_managers_and_a_rebind_share_one_provider(providers: list[MeterProvider]) -> None:
    reader = InMemoryMetricReader()
    providers.append(provider := provider_for(reader))
    async with manager() as one, manager() as two:
        set_meter_provider(one, provider)
        set_meter_provider(one, None)
        set_meter_provider(one, provider)  # the meter hands back the same instruments: they must still report
        set_meter_provider(two, provider)
        await one.register_task(Task(ok))
        await two.register_task(Task(ok))
        await two.register_task(Task(ok, queue="two"))
        await one.wait(10)
        await two.wait(10)
        data = reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    by_name = {m.name: {frozenset((p.attributes or {}).items()): p for p in m.data.data_points} for m in scope.metrics}
    default, other = frozenset({("queue", "default")}), frozenset({("queue", "two")})
    completed = {key: getattr(point, "value", None) for key, point in by_name["tasks_completed_total"].items()}
    assert completed == {default: 2, other: 1}  # the two managers' series add up
    latency = {key: getattr(point, "count", None) for key, point in by_name["task_latency_seconds"].items()}
    assert latency == {default: 2, other: 1}


async def test_views_rename_select_attributes_and_drop(providers: list[MeterProvider]) -> None:
    renamed, by_queue, dropped = InMemoryMetricReader(), InMemoryMetricReader(), InMemoryMetricReader()
    rename = View(instrument_name="task_latency_seconds", name="latency", description="renamed")
    providers.append(first := provider_for(renamed, views=[rename]))
    providers.append(second := provider_for(by_queue, views=[View(instrument_name="*", attribute_keys={"queue"})]))
    providers.append(third := provider_for(dropped, views=[View(instrument_name="*", aggregation=DropAggregation())]))
    log = LatencyLog()
    async with manager() as a, manager() as b, durable_manager() as b_durable, manager() as c:
        set_meter_provider(a, first)
        set_meter_provider(b, second)
        set_meter_provider(b_durable, second)
        set_meter_provider(c, third)
        assert [metrics._latency_mode(tm) for tm in (a, b, b_durable, c)] == ["recorded"] * 4
        b.add_instrumentation(log)
        b_durable.add_instrumentation(log)
        await a.register_task(Task(ok))
        await c.register_task(Task(ok))
        await run_mix(b, b_durable, log, durable=2)
        await b.register_task(Task(ok, queue="jobs"))  # same queue as the durable handler
        await until(lambda: len(log.samples) == 9)
        await a.wait(10)
        await c.wait(10)
        assert total_count(dropped) == 0
    assert points(dropped, "task_latency_seconds") == {}
    (point,) = points(renamed, "latency").values()
    assert point.count == 1
    got = summaries(points(by_queue))
    want = expected(log.samples, keep=("queue",))
    assert set(got) == set(want) == {frozenset({("queue", q)}) for q in ("default", "emails", "jobs")}
    assert got == want  # two series feeding one point: the SDK adds each sample in order, as expected() does


@pytest.mark.parametrize("setup", ["view boundaries", "view exponential", "reader exponential"])
async def test_other_aggregations_get_every_sample(setup: str, providers: list[MeterProvider]) -> None:
    reader = InMemoryMetricReader()
    views: list[View] = []
    if setup == "view boundaries":
        views = [View(instrument_name="task_*", aggregation=ExplicitBucketHistogramAggregation(boundaries=(0.1, 1.0)))]
    elif setup == "view exponential":
        views = [View(instrument_name="task_*", aggregation=ExponentialBucketHistogramAggregation())]
    else:
        reader = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    providers.append(provider := provider_for(reader, views=views))
    async with manager() as tm:
        set_meter_provider(tm, provider)
        for _ in range(4):
            await tm.register_task(Task(ok))
        await tm.wait(10)
    data = reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    (histogram,) = (m for m in scope.metrics if m.name == "task_latency_seconds")
    (point,) = histogram.data.data_points
    assert getattr(point, "count", None) == 4
    if setup == "view boundaries":
        assert tuple(getattr(point, "explicit_bounds", ())) == (0.1, 1.0)


async def test_a_reader_added_later_gets_the_samples_from_then_on(providers: list[MeterProvider]) -> None:
    first = InMemoryMetricReader()
    later = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    providers.append(provider := provider_for(first))
    async with manager() as tm:
        set_meter_provider(tm, provider)
        await tm.register_task(Task(ok))
        await tm.wait(10)
        provider.add_metric_reader(later)
        for _ in range(3):
            await tm.register_task(Task(ok))
        await tm.wait(10)
        assert total_count(first) == 4
        exponential = later.get_metrics_data()
    assert exponential is not None
    (scope,) = exponential.resource_metrics[0].scope_metrics
    (histogram,) = (m for m in scope.metrics if m.name == "task_latency_seconds")
    assert sum(getattr(p, "count", 0) for p in histogram.data.data_points) == 3


async def test_a_no_op_provider_costs_no_record_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.metrics import NoOpHistogram

    calls: list[float] = []
    monkeypatch.setattr(NoOpHistogram, "record", lambda self, amount, *args, **kwargs: calls.append(amount))
    async with manager() as tm:
        set_meter_provider(tm, NoOpMeterProvider())
        assert metrics._latency_mode(tm) == "off"
        for _ in range(3):
            await tm.register_task(Task(ok))
        await tm.wait(10)
        assert tm.metrics().completed == 3
    assert calls == []


async def test_a_cumulative_series_starts_before_its_first_sample(providers: list[MeterProvider]) -> None:
    reader = InMemoryMetricReader()
    providers.append(provider := provider_for(reader))
    log = LatencyLog()
    async with manager() as tm:
        set_meter_provider(tm, provider)
        tm.add_instrumentation(log)
        await tm.register_task(Task(sleeper(0.01)))
        await tm.wait(10)
        (point,) = points(reader).values()
    assert point.start_time_unix_nano <= log.first_ns <= point.time_unix_nano
