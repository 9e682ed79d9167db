"""task_latency_seconds: pre-aggregated on the event loop, merged into the SDK's storage at collection.

Expected values come from a second instrumentation on the same manager that logs the exact latencies
the manager reports, so bucket counts, count, sum, min and max are compared exactly.
"""

from __future__ import annotations

import asyncio
import logging
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
from worker_otel import _sdk_histogram, metrics, semconv, set_meter_provider

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


@pytest.fixture
def record_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fallback: no SDK version is verified, so every sample goes through Histogram.record."""
    monkeypatch.setattr(_sdk_histogram, "VERIFIED_SDK_VERSIONS", frozenset())


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
@pytest.mark.parametrize("mode", ["merged", "recorded"])
async def test_buckets_count_sum_min_max_are_exact_over_two_collections(
    temporality: AggregationTemporality, mode: str, providers: list[MeterProvider], request: pytest.FixtureRequest
) -> None:
    if mode == "recorded":
        request.getfixturevalue("record_each")
    reader = InMemoryMetricReader(preferred_temporality={Histogram: temporality})
    providers.append(provider := provider_for(reader))
    log = LatencyLog()
    async with manager() as tm, durable_manager() as durable_tm:
        for each in (tm, durable_tm):
            set_meter_provider(each, provider)
            assert metrics._latency_mode(each) == mode
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
    assert emails[0][2] + emails[0][3] >= 1  # the 30 ms task is past the 25 ms boundary
    if temporality is CUMULATIVE:
        assert second == third == expected(log.samples)
    else:
        assert second == expected(log.samples[half:])
        assert third == {}


async def test_the_merged_path_gives_the_same_points_as_record(
    monkeypatch: pytest.MonkeyPatch, providers: list[MeterProvider]
) -> None:
    # Boundary values land as with bisect_left (a bucket is (previous, bound]); invalid ones are dropped.
    latencies = [0.0, 1e-6, 0.005, 0.0050000001, 0.01, 0.3, 2.5, 10.0, 10.5, 1e6, -1.0, math.nan, math.inf]
    found: dict[str, list[dict[Attrs, HistogramDataPoint]]] = {}
    for mode in ("merged", "recorded"):
        if mode == "recorded":
            monkeypatch.setattr(_sdk_histogram, "VERIFIED_SDK_VERSIONS", frozenset())
        reader = InMemoryMetricReader(preferred_temporality={Histogram: DELTA})
        providers.append(provider := provider_for(reader))
        tm = manager()
        set_meter_provider(tm, provider)
        assert metrics._latency_mode(tm) == mode
        instrumentation = metrics._BINDINGS[tm][1].instrumentation
        found[mode] = []
        for batch in (latencies, latencies[2:9]):
            for index, latency in enumerate(batch):
                task = Task(ok, queue="a" if index % 3 else "b")
                instrumentation.on_finish(task, TaskStatus.COMPLETED, latency)
            found[mode].append(points(reader))
    for merged, recorded in zip(found["merged"], found["recorded"], strict=True):
        assert set(merged) == set(recorded) == {frozenset({("queue", "a")}), frozenset({("queue", "b")})}
        for key, point in merged.items():
            other = recorded[key]
            assert point.attributes == other.attributes
            assert point.start_time_unix_nano <= point.time_unix_nano
            assert (point.bucket_counts, point.count, point.sum, point.min, point.max, point.explicit_bounds) == (
                other.bucket_counts,
                other.count,
                other.sum,
                other.min,
                other.max,
                other.explicit_bounds,
            )
    counts = found["merged"][0][frozenset({("queue", "a")})].bucket_counts
    assert sum(counts) == 6  # -1 and NaN dropped
    assert counts[-1] == 1  # 10.5: past the last boundary


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
            assert metrics._latency_mode(tm) == "merged"
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


async def test_samples_pending_when_the_provider_is_removed_reach_it(providers: list[MeterProvider]) -> None:
    reader = InMemoryMetricReader()
    providers.append(provider := provider_for(reader))
    async with manager() as tm:
        set_meter_provider(tm, provider)
        for _ in range(5):
            await tm.register_task(Task(ok))
        await tm.wait(10)
        set_meter_provider(tm, None)  # no collection yet: the five samples are still on the event loop side
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


async def test_views_that_keep_the_buckets_are_merged(providers: list[MeterProvider]) -> None:
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
        assert [metrics._latency_mode(tm) for tm in (a, b, b_durable, c)] == ["merged"] * 4
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
    for key, (counts, count, total, low, high) in want.items():
        # Two series merged into one point: their sums are added per series, not sample by sample.
        assert got[key][:2] == (counts, count)
        assert got[key][2] == pytest.approx(total, rel=1e-12)
        assert got[key][3:] == (low, high)


@pytest.mark.parametrize(
    "setup",
    ["view boundaries", "view exponential", "reader exponential", "no-op provider"],
)
async def test_other_aggregations_record_each_sample(
    setup: str, providers: list[MeterProvider], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sdk_histogram, "_logged", set())  # each reason is logged once per process
    reader = InMemoryMetricReader()
    if setup == "view boundaries":
        aggregation = ExplicitBucketHistogramAggregation(boundaries=(0.1, 1.0))
        provider: Any = provider_for(reader, views=[View(instrument_name="task_*", aggregation=aggregation)])
    elif setup == "view exponential":
        aggregation_e = ExponentialBucketHistogramAggregation()
        provider = provider_for(reader, views=[View(instrument_name="task_*", aggregation=aggregation_e)])
    elif setup == "reader exponential":
        reader = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
        provider = provider_for(reader)
    else:
        provider = NoOpMeterProvider()
    if isinstance(provider, MeterProvider):
        providers.append(provider)
    async with manager() as tm:
        with caplog.at_level(logging.INFO, logger="worker_otel.metrics"):
            set_meter_provider(tm, provider)
        assert metrics._latency_mode(tm) == "recorded"
        (why,) = (r.getMessage() for r in caplog.records if r.name == "worker_otel.metrics")
        assert why.startswith("task_latency_seconds: recording each sample through the SDK: ")
        for _ in range(4):
            await tm.register_task(Task(ok))
        await tm.wait(10)
    if setup != "no-op provider":
        data = reader.get_metrics_data()
        assert data is not None
        (scope,) = data.resource_metrics[0].scope_metrics
        (histogram,) = (m for m in scope.metrics if m.name == "task_latency_seconds")
        (point,) = histogram.data.data_points
        assert getattr(point, "count", None) == 4


async def test_a_reader_added_later_with_another_aggregation_switches_to_record(
    providers: list[MeterProvider], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sdk_histogram, "_logged", set())  # each reason is logged once per process
    first = InMemoryMetricReader()
    later = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    providers.append(provider := provider_for(first))
    async with manager() as tm:
        set_meter_provider(tm, provider)
        assert metrics._latency_mode(tm) == "merged"
        await tm.register_task(Task(ok))
        await tm.wait(10)
        provider.add_metric_reader(later)
        with caplog.at_level(logging.WARNING, logger="worker_otel.metrics"):
            assert total_count(first) == 1
        assert metrics._latency_mode(tm) == "recorded"
        for _ in range(3):
            await tm.register_task(Task(ok))
        await tm.wait(10)
        assert total_count(first) == 4
        exponential = later.get_metrics_data()
    (warning,) = (r for r in caplog.records if r.levelno == logging.WARNING)
    assert "aggregates the histogram differently" in warning.getMessage()
    assert exponential is not None
    (scope,) = exponential.resource_metrics[0].scope_metrics
    (histogram,) = (m for m in scope.metrics if m.name == "task_latency_seconds")
    assert sum(getattr(p, "count", 0) for p in histogram.data.data_points) == 3  # the pending sample is lost


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


def test_a_hand_over_waits_for_the_update_the_event_loop_is_in(providers: list[MeterProvider]) -> None:
    from worker_otel._instrumentation import TaskMetricsInstrumentation

    providers.append(provider := provider_for(InMemoryMetricReader()))
    histogram = provider.get_meter("test").create_histogram("h")
    instrumentation = TaskMetricsInstrumentation(histogram, pre_aggregate=True)
    instrumentation.on_finish(Task(ok), TaskStatus.COMPLETED, 0.002)  # one complete sample (this thread writes)
    (series,) = instrumentation.all_series()
    # Replay on_finish's update section by hand and stop in its middle: the second sample is counted, not summed.
    instrumentation._writing = True
    pending = series.pending
    pending.counts[0] += 1
    taken: list[Any] = []
    collector = threading.Thread(target=lambda: taken.extend(instrumentation.take_latency()))
    collector.start()
    collector.join(0.05)
    assert collector.is_alive()  # swapped, and waiting for the event loop to leave the section
    assert series.pending is not pending
    pending.sum += 0.001
    pending.min = min(pending.min, 0.001)
    instrumentation._writing = False
    collector.join()
    ((got_series, got),) = taken
    assert got_series is series
    assert got is pending
    assert (got.counts[0], got.sum, got.min, got.max) == (2, 0.002 + 0.001, 0.001, 0.002)


async def test_a_merge_that_fails_leaves_the_collection_whole_and_records_from_then_on(
    providers: list[MeterProvider], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    providers.append(provider := provider_for(reader))

    def broken(self: object, taken: object) -> None:
        raise AttributeError("_value")  # as if the SDK had renamed an internal

    async with manager() as tm:
        set_meter_provider(tm, provider)
        monkeypatch.setattr(_sdk_histogram.LatencySink, "merge", broken)
        await tm.register_task(Task(ok))
        await tm.wait(10)
        with caplog.at_level(logging.WARNING, logger="worker_otel.metrics"):
            data = reader.get_metrics_data()
        assert metrics._latency_mode(tm) == "recorded"
        await tm.register_task(Task(ok))
        await tm.wait(10)
        assert total_count(reader) == 1  # the sample taken when the merge failed is lost, the next one is not
    assert data is not None
    names = {m.name for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert "tasks_scheduled_total" in names  # the callback that merges still reported its counter
    assert any("merge into the SDK failed" in r.getMessage() for r in caplog.records)
