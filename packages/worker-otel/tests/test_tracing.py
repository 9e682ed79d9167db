from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from otel_helpers import manager
from worker_core import ConfigurationError, Retry, Task, TaskContext, TaskStatus, TaskTracer
from worker_otel import OTelTracer


def attempts(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == "worker.task"]


async def fails_once(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    return "ok"


def test_otel_tracer_implements_the_core_protocol(tracer_provider: TracerProvider) -> None:
    assert isinstance(OTelTracer(tracer_provider), TaskTracer)


async def test_a_span_per_attempt_with_status_attributes_and_the_enqueuers_parent(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    async with manager() as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(fails_once, name="flaky", priority=3, queue="emails", retries=1)
        with tracer_provider.get_tracer("app").start_as_current_span("enqueue") as enqueue:
            await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.COMPLETED
    first, second = sorted(attempts(span_exporter), key=lambda s: s.start_time or 0)
    for span, attempt in ((first, 1), (second, 2)):
        assert span.kind is SpanKind.CONSUMER
        assert dict(span.attributes or {}) == {
            "task.id": str(task.id),
            "task.name": "flaky",
            "task.priority": 3,
            "task.queue": "emails",
            "task.attempt": attempt,
        }
        assert span.parent is not None
        assert span.parent.span_id == enqueue.get_span_context().span_id
        assert span.context is not None
        assert span.context.trace_id == enqueue.get_span_context().trace_id
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ValueError: first attempt fails"
    (event,) = first.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "ValueError"
    assert second.status.status_code is StatusCode.OK
    assert not second.events
    assert (task.metadata or {})["traceparent"].split("-")[1] == f"{enqueue.get_span_context().trace_id:032x}"


async def test_the_span_is_current_in_async_and_threaded_task_code(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    app = tracer_provider.get_tracer("app")
    seen: dict[str, int] = {}

    async def async_code(ctx: TaskContext) -> None:
        seen["async"] = trace.get_current_span().get_span_context().span_id
        with app.start_as_current_span("inside-async"):
            await asyncio.sleep(0)

    def sync_code(ctx: TaskContext) -> None:
        seen["sync"] = trace.get_current_span().get_span_context().span_id
        with app.start_as_current_span("inside-sync"):
            pass

    with caplog.at_level(logging.WARNING):
        async with manager() as tm:
            tm.set_tracer(OTelTracer(tracer_provider))
            await tm.register_task(Task(async_code, name="async"))
            await tm.register_task(Task(sync_code, name="sync"))
            await tm.wait(10)
    assert not caplog.records  # start/end ran in one context: no "Failed to detach context"
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    for kind in ("async", "sync"):
        attempt = next(s for s in attempts(span_exporter) if (s.attributes or {})["task.name"] == kind)
        assert attempt.context is not None
        assert seen[kind] == attempt.context.span_id
        inner = spans[f"inside-{kind}"]
        assert inner.parent is not None
        assert inner.parent.span_id == attempt.context.span_id
    assert not trace.get_current_span().get_span_context().is_valid  # nothing leaked into the test's context


async def test_a_task_registered_outside_any_span_starts_a_new_trace(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    async with manager() as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(fails_once, retries=1)
        await tm.register_task(task)
        await tm.wait(10)
    first, second = attempts(span_exporter)
    assert first.parent is None
    assert second.parent is None
    assert "traceparent" not in (task.metadata or {})


async def test_retry_signal_is_not_an_error_and_abort_is(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    from worker_core import Abort

    async def asks_retry(ctx: TaskContext) -> None:
        if ctx.attempt == 1:
            raise Retry(0.001, "not yet")
        raise Abort("give up")

    async with manager() as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(asks_retry, retries=2)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.FAILED
    first, second = sorted(attempts(span_exporter), key=lambda s: s.start_time or 0)
    assert first.status.status_code is StatusCode.UNSET
    assert [(e.name, dict(e.attributes or {})) for e in first.events] == [
        ("task.retry_requested", {"reason": "not yet"})
    ]
    assert second.status.status_code is StatusCode.ERROR
    assert second.status.description == "Abort: give up"


async def test_a_timed_out_attempt_ends_its_span_with_an_error(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    async with manager(max_retries=0) as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(hang, timeout=0.01)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.DEADLINE_EXCEEDED
    (span,) = attempts(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "CancelledError"


async def test_an_explicit_propagator_and_scope(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    propagator: TextMapPropagator = TraceContextTextMapPropagator()
    tracer = OTelTracer(tracer_provider, propagator=propagator, tracer_name="scope", tracer_version="1.2")
    async with manager() as tm:
        tm.set_tracer(tracer)
        with tracer_provider.get_tracer("app").start_as_current_span("enqueue"):
            task = Task(fails_once, retries=1, metadata={"tenant": "a"})
            await tm.register_task(task)
        await tm.wait(10)
    assert set(task.metadata or {}) == {"tenant", "traceparent"}
    spans = attempts(span_exporter)
    assert len(spans) == 2
    scopes = {(s.instrumentation_scope.name, s.instrumentation_scope.version) for s in spans if s.instrumentation_scope}
    assert scopes == {("scope", "1.2")}


async def test_a_traceparent_from_a_remote_producer_is_kept_without_a_current_span(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with manager() as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(fails_once, retries=1, metadata={"traceparent": remote})
        await tm.register_task(task)
        await tm.wait(10)
    assert (task.metadata or {})["traceparent"] == remote
    for span in attempts(span_exporter):
        assert span.context is not None
        assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
        assert span.parent is not None
        assert span.parent.span_id == 0xB7AD6B7169203331


async def test_baggage_without_a_span_and_a_custom_propagator_are_still_injected(
    tracer_provider: TracerProvider,
) -> None:
    from opentelemetry import baggage
    from opentelemetry import context as otel_context
    from opentelemetry.propagators.textmap import CarrierT, Getter, Setter, default_getter, default_setter

    class Stamp(TextMapPropagator):
        """Writes a header even from an empty context (the default propagators write nothing then)."""

        def inject(self, carrier: CarrierT, context: Any = None, setter: Setter[CarrierT] = default_setter) -> None:
            setter.set(carrier, "stamp", "1")

        def extract(self, carrier: CarrierT, context: Any = None, getter: Getter[CarrierT] = default_getter) -> Any:
            return context

        @property
        def fields(self) -> set[str]:
            return {"stamp"}

    async with manager() as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        bare = Task(fails_once, retries=1)
        await tm.register_task(bare)
        token = otel_context.attach(baggage.set_baggage("tenant", "t1"))
        try:
            with_baggage = Task(fails_once, retries=1)
            await tm.register_task(with_baggage)
        finally:
            otel_context.detach(token)
        tm.set_tracer(OTelTracer(tracer_provider, propagator=Stamp()))
        stamped = Task(fails_once, retries=1)
        await tm.register_task(stamped)
        await tm.wait(10)
    assert not bare.metadata
    assert with_baggage.metadata == {"baggage": "tenant=t1"}
    assert stamped.metadata == {"stamp": "1"}


def test_bad_tracer_arguments_are_configuration_errors() -> None:
    bad: Any = object()
    with pytest.raises(ConfigurationError, match="TracerProvider"):
        OTelTracer(bad)
    with pytest.raises(ConfigurationError, match="TextMapPropagator"):
        OTelTracer(propagator=bad)
    with pytest.raises(ConfigurationError, match="SpanKind"):
        OTelTracer(span_kind=bad)


async def test_an_error_str_cannot_print_still_ends_its_span_with_an_error(
    tracer_provider: TracerProvider, span_exporter: InMemorySpanExporter
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text for you")

    async def fails(ctx: TaskContext) -> None:
        raise Unprintable

    async with manager(max_retries=0) as tm:
        tm.set_tracer(OTelTracer(tracer_provider))
        task = Task(fails)
        await tm.register_task(task)
        await tm.wait(10)
        assert trace.get_current_span() is trace.INVALID_SPAN  # the attempt's context was detached
    assert task.status is TaskStatus.FAILED
    (span,) = attempts(span_exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Unprintable: <unprintable Unprintable: str() raised RuntimeError>"
