"""What happens after an attempt: the task finishes, or it waits in backoff and is queued again.

:class:`Finisher` is the one way a task becomes terminal (attempt outcome, cancellation while waiting, stop,
durable ack or dead-letter): counters, the result bus, the finish event, then the registry, in that order, so
a result is published before ``wait()`` can return. :class:`Retries` owns the in-memory backoff timers.
:class:`Outcomes` routes an attempt's outcome: durable tasks to the durable runtime, others to a retry or a
finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from worker_core import task as records
from worker_core.backoff import retry_jitter
from worker_core.errors import Abort, QueueFullError, Retry
from worker_core.events import EventPipeline, Pending
from worker_core.results import ResultBus
from worker_core.status import TaskStatus
from worker_core.task import Task

from .registry import TaskRegistry
from .scheduler import Scheduler

__all__ = ("Finisher", "Outcomes", "Retries", "Settle", "run_until_suspended")

logger = logging.getLogger("worker_core.manager")

_COMPLETED: Final = TaskStatus.COMPLETED
_CANCELLED: Final = TaskStatus.CANCELLED
_FAILED: Final = TaskStatus.FAILED
_monotonic = time.monotonic

#: How an attempt's outcome is settled: ``settle(task, status, result, error)``; a coroutine to await, or None.
Settle = Callable[[Task[Any], TaskStatus, Any, "BaseException | None"], Pending]


class Finisher:
    """Makes tasks terminal, exactly once each; owns the completed/failed/cancelled counters and latencies."""

    __slots__ = (
        "_bus",
        "_events",
        "_registry",
        "_spawn",
        "cancelled",
        "completed",
        "failed",
        "lat_count",
        "lat_max",
        "lat_total",
    )

    def __init__(
        self,
        registry: TaskRegistry,
        bus: ResultBus,
        events: EventPipeline,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._registry = registry
        self._bus = bus
        self._events = events
        self._spawn = spawn  # runs a coroutine in the background, owned (hooks of a finish from a timer)
        self.completed = self.failed = self.cancelled = 0
        self.lat_count = 0
        self.lat_total = self.lat_max = 0.0

    def finish(self, task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> Pending:
        """Make ``task`` terminal; a coroutine to await when an async ``on_finish`` hook runs, else ``None``.

        Nothing happens when the task already is terminal.
        """
        ran = records.finish(task, status, result, error, _monotonic())
        if ran is None:
            return None
        if status is _COMPLETED:
            self.completed += 1
        elif status is _CANCELLED:
            self.cancelled += 1
        else:
            self.failed += 1
        latency: float | None = None
        if ran >= 0.0:
            latency = ran
            self.lat_count += 1
            self.lat_total += ran
            if ran > self.lat_max:
                self.lat_max = ran
        self._bus.publish(task)
        events = self._events
        if events.has_finish:
            pending = events.finished(task, status, result, error, latency)
            if pending is not None:
                return self._settle_after(pending, task)
        self._registry.settled(task)
        return None

    async def _settle_after(self, pending: Coroutine[Any, Any, None], task: Task[Any]) -> None:
        try:
            await pending
        finally:
            self._registry.settled(task)

    def finish_soon(self, task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> None:
        """:meth:`finish` from a callback: an async hook runs in the background (owned, awaited at stop)."""
        pending = self.finish(task, status, result, error)
        if pending is not None:
            self._spawn(pending)

    def finish_now(self, task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> None:
        """:meth:`finish` where nothing may be awaited any more (the loop is going away).

        An async ``on_finish`` hook runs up to its first suspension and is closed there.
        """
        pending = self.finish(task, status, result, error)
        if pending is not None:
            run_until_suspended(pending)  # its finally settles the task in the registry


def run_until_suspended(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` synchronously up to its first suspension, then close it (no loop turn to finish it in)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    except BaseException:
        logger.exception("hook raised while the manager was stopping; ignored")
        return
    coro.close()


class Retries:
    """In-memory backoff: one timer per task waiting to be retried; then back to the ready queues."""

    __slots__ = ("_events", "_finisher", "_kick", "_loop", "_max_tasks", "_scheduler", "_timers", "retried")

    def __init__(
        self, scheduler: Scheduler, finisher: Finisher, events: EventPipeline, max_tasks: int, kick: Callable[[], None]
    ) -> None:
        self._scheduler = scheduler
        self._finisher = finisher
        self._events = events
        self._max_tasks = max_tasks
        self._kick = kick
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[int, tuple[Task[Any], asyncio.TimerHandle]] = {}
        self.retried = 0

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def schedule(self, task: Task[Any], error: BaseException | None) -> Pending:
        """``task`` waits in backoff (``RETRYING``), then competes for a worker again; its ``on_retry`` hook."""
        loop = self._loop
        assert loop is not None
        attempt, base = records.retry_wait(task, error)
        delay = error.delay if isinstance(error, Retry) and error.delay is not None else None
        if delay is None:
            delay = retry_jitter(base, task.id, attempt)
        self.retried += 1
        self._timers[records.key(task)] = (task, loop.call_later(delay, self._due, task))
        events = self._events
        return events.retrying(task, delay, attempt) if events.has_retry else None

    def _due(self, task: Task[Any]) -> None:
        self._timers.pop(records.key(task), None)
        scheduler = self._scheduler
        if scheduler.waiting >= self._max_tasks:
            error = QueueFullError(f"queue is full (max {self._max_tasks}); retry of task {task.id} dropped")
            self._finisher.finish_soon(task, _FAILED, None, error)
            return
        records.requeue(task)
        scheduler.add_ready(task)
        self._kick()

    def take(self, task: Task[Any]) -> bool:
        """Stop ``task``'s backoff timer (it is cancelled, or ``execute_task`` runs it now); True when it had one."""
        entry = self._timers.pop(records.key(task), None)
        if entry is None:
            return False
        entry[1].cancel()
        return True

    def stop(self) -> list[Task[Any]]:
        """Stop every backoff timer; the tasks that were waiting."""
        entries, self._timers = self._timers, {}
        for _, timer in entries.values():
            timer.cancel()
        self._loop = None
        return [task for task, _ in entries.values()]


class Outcomes:
    """Routes an attempt's outcome: durable tasks to the durable runtime; others to a retry or a finish."""

    __slots__ = ("_finisher", "_retries", "durable", "retrying")

    def __init__(self, finisher: Finisher, retries: Retries) -> None:
        self._finisher = finisher
        self._retries = retries
        self.durable: Settle | None = None  # set while a durable runtime runs
        self.retrying = True  # False once the manager stops: a failure then finishes the task

    def settle(self, task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> Pending:
        """Settle one attempt's outcome."""
        if task.durable:
            durable = self.durable
            if durable is not None:
                return durable(task, status, result, error)
        elif (
            status is not _COMPLETED
            and status is not _CANCELLED
            and self.retrying
            and records.retries_left(task) > 0
            and not isinstance(error, Abort)
        ):
            return self._retries.schedule(task, error)
        return self._finisher.finish(task, status, result, error)
