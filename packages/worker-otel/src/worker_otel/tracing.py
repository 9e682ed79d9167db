"""``OTelTracer``: one OpenTelemetry span per task attempt, parented on the code that enqueued the task.

The manager calls :meth:`OTelTracer.inject` when a task is registered: the current trace context is
written into the task's metadata (W3C ``traceparent``, plus ``tracestate``/``baggage`` with the default
propagator). Durable metadata is stored with the task, so the worker that runs it, possibly on another
node after a Redis or gRPC hop, continues the same trace. :meth:`OTelTracer.start` extracts that
context, opens the ``worker.task`` span and makes it current for the task code.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Final, final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode
from worker_core import ConfigurationError, Retry

from . import semconv
from ._version import VERSION

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from worker_core import Task, TaskContext

__all__ = ("OTelTracer",)

_OK: Final = Status(StatusCode.OK)
# The parent of a task registered outside any span: an empty Context (never the worker's own context).
_NO_PARENT: Final = otel_context.Context()


@final
class _AttemptSpan:
    """The :class:`~worker_core.protocols.TaskSpan` for one attempt: ends the span and restores the context."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span, token: Token[Context]) -> None:
        self._span = span
        self._token = token

    def end(self, error: BaseException | None) -> None:
        span = self._span
        if error is None:
            span.set_status(_OK)
        elif not span.is_recording():
            pass  # not sampled: describing the error would be thrown away
        elif isinstance(error, Retry):
            # A Retry is control flow, not a failure: the span stays UNSET and says why it ended.
            span.add_event("task.retry_requested", {"reason": str(error)})
        else:
            span.record_exception(error)
            message = str(error)
            kind = type(error).__name__
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))
        span.end()
        otel_context.detach(self._token)


@final
class OTelTracer:
    """A :class:`~worker_core.protocols.TaskTracer` that records a ``worker.task`` span per attempt.

    Give it to ``TaskManager.set_tracer``. Spans carry ``task.id``, ``task.name``, ``task.priority``,
    ``task.queue`` and ``task.attempt``; an attempt that raised records the exception and ends with
    status ``ERROR``, a successful one with ``OK``, one that raised ``Retry`` stays ``UNSET`` with a
    ``task.retry_requested`` event. The span's parent is the trace context stored in the task's
    metadata at registration; a task registered outside any span starts a new trace. Attributes are
    set once the span is known to be sampled, so samplers do not see them (they cost a UUID-to-str
    conversion that an unsampled attempt should not pay).

    Args:
        tracer_provider: Where spans go; the global provider when ``None``.
        propagator: How the context is written into and read from task metadata; the global
            propagator (W3C Trace Context and Baggage unless configured otherwise) when ``None``.
        tracer_name: Instrumentation scope name.
        tracer_version: Instrumentation scope version; this package's version when ``None``.
        span_kind: Kind of the attempt spans; ``CONSUMER``, since the task is work handed over by
            its producer and processed later.

    Raises:
        ConfigurationError: An argument of the wrong type.
    """

    __slots__ = ("_fields", "_fields_of", "_kind", "_propagator", "_tracer")

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        propagator: TextMapPropagator | None = None,
        tracer_name: str = semconv.DEFAULT_INSTRUMENTATION_NAME,
        tracer_version: str | None = None,
        span_kind: SpanKind = SpanKind.CONSUMER,
    ) -> None:
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise ConfigurationError(
                f"tracer_provider must be an opentelemetry.trace.TracerProvider or None, "
                f"got {type(tracer_provider).__name__}"
            )
        if propagator is not None and not isinstance(propagator, TextMapPropagator):
            raise ConfigurationError(f"propagator must be a TextMapPropagator, got {type(propagator).__name__}")
        if not isinstance(span_kind, SpanKind):
            raise ConfigurationError(f"span_kind must be an opentelemetry.trace.SpanKind, got {span_kind!r}")
        version = VERSION if tracer_version is None else tracer_version
        self._tracer = trace.get_tracer(tracer_name, version, tracer_provider)
        self._propagator = propagator
        self._kind = span_kind
        # The metadata keys the propagator reads, cached per propagator (the global one may be replaced).
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        """Write the caller's current trace context into ``metadata`` (nothing when no span is active)."""
        (self._propagator or get_global_textmap()).inject(metadata)

    def start(self, task: Task, ctx: TaskContext) -> _AttemptSpan:
        """Open the attempt's span, child of the enqueuing code's span, and make it current."""
        parent = _NO_PARENT
        metadata = task.metadata
        if metadata:
            propagator = self._propagator or get_global_textmap()
            if propagator is not self._fields_of:
                self._fields = frozenset(propagator.fields)
                self._fields_of = propagator
            if not self._fields.isdisjoint(metadata):
                parent = propagator.extract(metadata, _NO_PARENT)
        span = self._tracer.start_span(
            semconv.SPAN_NAME_TASK, parent, self._kind, record_exception=False, set_status_on_exception=False
        )
        if span.is_recording():  # attributes only for sampled spans (the task id costs a UUID to str)
            span.set_attributes(
                {
                    semconv.SPAN_ATTR_TASK_ID: str(task.id),
                    semconv.SPAN_ATTR_TASK_NAME: task.name,
                    semconv.SPAN_ATTR_TASK_PRIORITY: task.priority,
                    semconv.SPAN_ATTR_TASK_QUEUE: task.queue,
                    semconv.SPAN_ATTR_TASK_ATTEMPT: ctx.attempt,
                }
            )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _AttemptSpan(span, token)
