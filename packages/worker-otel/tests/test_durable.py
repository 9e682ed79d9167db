"""Durable tasks through worker_core.testing's in-memory backend: their trace and their metrics."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otel_helpers import attrs, collect, manager, until
from worker_core import TaskContext, TaskManager
from worker_core.durable.handlers import DurableHandlerSpec
from worker_core.durable.types import DurableTask
from worker_core.testing import ForwardingBackend
from worker_core.testing.memory import InMemoryDurableBackend
from worker_otel import OTelTracer, set_meter_provider


def durable_manager(backend: Any, handlers: dict[str, Any], **options: Any) -> TaskManager:
    return manager(
        durable_backend=backend, durable_handlers=handlers, durable_poll_interval=0.01, retry_delay=0.001, **options
    )


async def test_the_trace_survives_a_durable_round_trip(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    backend = InMemoryDurableBackend()
    seen: list[int] = []

    async def send(ctx: TaskContext, payload: Any) -> str:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        if ctx.attempt == 1:
            raise ConnectionError("smtp busy")
        return "sent"

    handlers = {"send_email": DurableHandlerSpec(None, send)}
    # The producer has no free worker, so it never leases: the task crosses the backend to the consumer.
    producer = durable_manager(backend, handlers)
    consumer = durable_manager(backend, handlers)
    async with producer:
        producer.set_max_workers(0)
        producer.set_tracer(OTelTracer(tracer_provider))
        with tracer_provider.get_tracer("app").start_as_current_span("signup") as signup:
            task_id = await producer.register_durable_task(
                DurableTask("send_email", {"to": "a@example.com"}, queue="emails", metadata={"tenant": "t1"})
            )
        stored = backend.get(str(task_id))
        assert stored is not None
        assert stored.task.metadata is not None
        traceparent = stored.task.metadata["traceparent"]
        assert stored.task.metadata["tenant"] == "t1"
        async with consumer:
            consumer.set_tracer(OTelTracer(tracer_provider))
            await until(lambda: consumer.metrics().completed == 1)
    trace_id = signup.get_span_context().trace_id
    assert traceparent.split("-")[1] == f"{trace_id:032x}"
    assert seen == [trace_id, trace_id]
    spans = sorted(
        (s for s in span_exporter.get_finished_spans() if s.name == "worker.task"), key=lambda s: s.start_time or 0
    )
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.OK]
    for span, attempt in zip(spans, (1, 2), strict=True):
        assert span.parent is not None
        assert span.parent.span_id == signup.get_span_context().span_id
        assert span.parent.is_remote
        attributes = dict(span.attributes or {})
        assert attributes["task.id"] == str(task_id)
        assert attributes["task.name"] == "send_email"
        assert attributes["task.queue"] == "emails"
        assert attributes["task.attempt"] == attempt


async def test_durable_tasks_are_counted_with_their_handler(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    backend = InMemoryDurableBackend()

    async def flaky(ctx: TaskContext, payload: Any) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("first delivery fails")
        return "ok"

    async def broken(ctx: TaskContext, payload: Any) -> None:
        raise ValueError("always")

    handlers = {"flaky": DurableHandlerSpec(None, flaky), "broken": DurableHandlerSpec(None, broken)}
    async with durable_manager(backend, handlers, max_retries=1) as tm:
        set_meter_provider(tm, meter_provider)
        await tm.register_durable_task(DurableTask("flaky", {"n": 1}, queue="jobs"))
        await tm.register_durable_task(DurableTask("broken", {"n": 2}, queue="jobs"))
        await until(lambda: tm.metrics().completed + tm.metrics().failed == 2)
        got = collect(metric_reader)
    flaky_series, broken_series = attrs(queue="jobs", handler="flaky"), attrs(queue="jobs", handler="broken")
    assert got["tasks_completed_total"] == {flaky_series: 1, broken_series: 0}
    assert got["tasks_failed_total"] == {flaky_series: 0, broken_series: 1}
    assert got["tasks_retried_total"] == {flaky_series: 1, broken_series: 1}
    latency = got["task_latency_seconds"]
    assert (latency[flaky_series][0], latency[broken_series][0]) == (1, 1)


async def test_durable_registrations_are_counted_as_scheduled(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    async def ok(ctx: TaskContext, payload: Any) -> None:
        return None

    async with durable_manager(InMemoryDurableBackend(), {"ok": DurableHandlerSpec(None, ok)}) as tm:
        tm.set_max_workers(0)
        set_meter_provider(tm, meter_provider)
        await tm.register_durable_task(DurableTask("ok", {}, queue="jobs"))
        got = collect(metric_reader)
    assert got.get("tasks_scheduled_total") == {attrs(queue="jobs", handler="ok"): 1}


class BacklogBackend(ForwardingBackend[InMemoryDurableBackend]):
    """The in-memory backend plus what a backend that heartbeats reports: its per-queue backlog."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.figures: dict[str, tuple[int, float]] = {}

    def backlog(self) -> dict[str, tuple[int, float]]:
        return dict(self.figures)


async def test_the_durable_backlog_is_a_gauge_per_queue() -> None:
    reader = InMemoryMetricReader()
    backend = BacklogBackend()

    async def noop(ctx: TaskContext, payload: Any) -> None:
        return None

    tm = durable_manager(backend, {"noop": DurableHandlerSpec(None, noop)})
    set_meter_provider(tm, MeterProvider(metric_readers=[reader]))
    async with tm:
        assert "durable_backlog" not in collect(reader)  # nothing reported yet: no series
        backend.figures = {"default": (7, 2.5), "emails": (0, 0.0)}
        got = collect(reader)
    assert got["durable_backlog"] == {attrs(queue="default"): 7, attrs(queue="emails"): 0}
    assert got["durable_backlog_oldest_seconds"] == {attrs(queue="default"): 2.5, attrs(queue="emails"): 0.0}
