"""Protocols for the objects users and plugins hand to a :class:`~worker_core.TaskManager`."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .status import TaskStatus
    from .task import Task, TaskContext

__all__ = ("Instrumentation", "TaskSpan", "TaskTracer")


class TaskSpan(Protocol):
    """One traced attempt; ``end`` receives the attempt's exception, or ``None`` on success."""

    def end(self, error: BaseException | None) -> None:
        """Finish the span."""
        ...


@runtime_checkable
class TaskTracer(Protocol):
    """Traces every attempt of every task (go-worker's TaskTracer).

    ``start`` is called right before ``execute``, in the asyncio task that awaits an ``async`` task
    (a worker, or ``execute_task``'s caller), or in a copy of that context carried into the worker thread
    for a plain function; whatever context variables it sets are visible to the task code. The span's
    ``end`` runs in the same context and must restore the variables ``start`` set (``OTelTracer``
    detaches its context token), since the worker's next attempt runs in that context too.
    ``inject`` is called when a task is registered, with the task's metadata, so the tracer
    can store the caller's trace context (W3C ``traceparent``) for the code that runs the task later,
    possibly on another node.
    """

    def start(self, task: Task[Any], ctx: TaskContext) -> TaskSpan:
        """Open a span for this attempt."""
        ...

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        """Write the current trace context into ``metadata``."""
        ...


class Instrumentation(Protocol):
    """Receives task events as they happen; worker-otel implements it. Every method is optional.

    Methods: ``on_scheduled(task)`` (a :class:`~worker_core.Task`, or the
    :class:`~worker_core.durable.DurableTask` record that ``register_durable_task`` stored),
    ``on_start(task)``, ``on_finish(task, status, latency_s)`` (``latency_s`` is ``None`` for a task
    that never started), ``on_retry(task, delay_s, attempt)``, ``on_result_dropped(count)``,
    ``on_schedule_tick(schedule, outcome)`` (a schedule's tick on this node: ``outcome`` is ``"fired"``, or
    why it was skipped: ``"paused"``, ``"not_accepting"``, ``"failed"``, ``"duplicate"`` (another node fired
    it), ``"late"``). They run on the event loop, must be cheap and must not raise.
    """

    def on_finish(self, task: Task[Any], status: TaskStatus, latency_s: float | None) -> None:
        """Called once per task when it reaches a terminal status."""
        ...
