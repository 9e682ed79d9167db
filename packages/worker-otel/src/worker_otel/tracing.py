"""``OTelTracer``: one OpenTelemetry span per task attempt, parented on the code that enqueued the task.

The manager calls :meth:`OTelTracer.inject` when a task is registered: the current trace context is
written into the task's metadata (W3C ``traceparent``, plus ``tracestate``/``baggage`` with the default
propagator). Durable metadata is stored with the task, so the worker that runs it, possibly on another
node after a Redis or gRPC hop, continues the same trace. :meth:`OTelTracer.start` extracts that
context, opens the ``worker.task`` span and makes it current for the task code.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from worker_core import ConfigurationError, Retry
from worker_core.errors import error_text

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
_attach: Final = otel_context.attach
_detach: Final = otel_context.detach
_get_current: Final = otel_context.get_current
_set_span_in_context: Final = trace.set_span_in_context
#: Propagators known to write nothing from an empty context (they serialize its span and baggage only).
_CONTEXT_ONLY_PROPAGATORS: Final = (TraceContextTextMapPropagator, W3CBaggagePropagator)


def _writes_nothing_when_empty(propagator: TextMapPropagator) -> bool:
    """Whether ``propagator`` (the default composite included) injects nothing from an empty context."""
    if type(propagator) is CompositePropagator:
        inner = getattr(propagator, "_propagators", None)
        return isinstance(inner, (list, tuple)) and all(_writes_nothing_when_empty(p) for p in inner)
    return type(propagator) in _CONTEXT_ONLY_PROPAGATORS


@final
class _AttemptSpan:
    """The :class:`~worker_core.protocols.TaskSpan` for one attempt: ends the span and restores the context."""

    __slots__ = ("_recording", "_span", "_token")

    def __init__(self, span: trace.Span, token: Token[Context], recording: bool) -> None:
        self._span = span
        self._token = token
        self._recording = recording

    def end(self, error: BaseException | None) -> None:
        span = self._span
        if not self._recording:
            pass  # not sampled: a status or an exception would be thrown away
        elif error is None:
            span.set_status(_OK)
        elif isinstance(error, Retry):
            # A Retry is control flow, not a failure: the span stays UNSET and says why it ended.
            span.add_event("task.retry_requested", {"reason": error_text(error)})
        else:
            message = error_text(error)
            kind = type(error).__name__
            try:
                span.record_exception(error)
            except Exception:
                span.add_event("exception", {"exception.type": kind, "exception.message": message})
            span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}" if message else kind))
        span.end()
        _detach(self._token)


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

    __slots__ = ("_fields", "_fields_of", "_kind", "_propagator", "_quiet_of", "_quiet_when_empty", "_start_span")

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
        # The bound method, looked up once (a proxy tracer of the global provider still resolves per call).
        self._start_span = trace.get_tracer(tracer_name, version, tracer_provider).start_span
        self._propagator = propagator
        self._kind = span_kind
        # Per propagator (the global one may be replaced): the metadata keys it reads, and whether it
        # writes nothing from an empty context.
        self._fields_of: TextMapPropagator | None = None
        self._fields: frozenset[str] = frozenset()
        self._quiet_of: TextMapPropagator | None = None
        self._quiet_when_empty = False

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        """Write the caller's current trace context into ``metadata`` (nothing when no span is active)."""
        propagator = self._propagator or get_global_textmap()
        if propagator is not self._quiet_of:
            self._quiet_when_empty = _writes_nothing_when_empty(propagator)
            self._quiet_of = propagator
        # Registration outside any span, baggage or other context value: the default propagators would
        # write nothing, and asking them costs more than the rest of a no-op task's registration.
        if self._quiet_when_empty and not _get_current():
            return
        propagator.inject(metadata)

    def start(self, task: Task[Any], ctx: TaskContext) -> _AttemptSpan:
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
        span = self._start_span(
            semconv.SPAN_NAME_TASK, parent, self._kind, record_exception=False, set_status_on_exception=False
        )
        recording = span.is_recording()
        if recording:  # attributes only for sampled spans (the task id costs a UUID to str)
            span.set_attributes(
                {
                    semconv.SPAN_ATTR_TASK_ID: str(task.id),
                    semconv.SPAN_ATTR_TASK_NAME: task.name,
                    semconv.SPAN_ATTR_TASK_PRIORITY: task.priority,
                    semconv.SPAN_ATTR_TASK_QUEUE: task.queue,
                    semconv.SPAN_ATTR_TASK_ATTEMPT: ctx.attempt,
                }
            )
        return _AttemptSpan(span, _attach(_set_span_in_context(span, parent)), recording)
