"""What the durable runtime sees of the engine: the :class:`~worker_core.durable.leased.WorkSink` protocol.

How many tasks could start now, a way to learn when that changes, and submit / withdraw / finish / forget
for the tasks it leased; nothing else of the engine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_core import task as records
from worker_core.status import TaskStatus

if TYPE_CHECKING:
    from worker_core.durable.leased import LeasedTask
    from worker_core.events import EventPipeline, Pending
    from worker_core.options import ManagerOptions

    from .attempt import AttemptRunner
    from .intake import Intake
    from .outcomes import Finisher
    from .pool import WorkerPool
    from .registry import TaskRegistry
    from .scheduler import Scheduler

__all__ = ("DurableSink",)


class DurableSink:
    """The :class:`~worker_core.durable.leased.WorkSink` over the pool, scheduler, registry and finisher."""

    __slots__ = ("_attempts", "_events", "_finisher", "_intake", "_options", "_pool", "_registry", "_scheduler")

    def __init__(
        self,
        pool: WorkerPool,
        scheduler: Scheduler,
        registry: TaskRegistry,
        finisher: Finisher,
        events: EventPipeline,
        intake: Intake,
        options: ManagerOptions,
        attempts: AttemptRunner,
    ) -> None:
        self._attempts = attempts
        self._pool = pool
        self._scheduler = scheduler
        self._registry = registry
        self._finisher = finisher
        self._events = events
        self._intake = intake
        self._options = options

    def free_slots(self) -> int:
        """Workers free and not already promised to a ready task."""
        return self._pool.free()

    def tokens(self) -> float:
        """Tokens the rate limiter holds now (``inf`` without one)."""
        limiter = self._pool.limiter
        return math.inf if limiter is None else limiter.tokens(asyncio.get_running_loop().time())

    def token_wait(self) -> float:
        """Seconds until the rate limiter has a token (0.0: it has one, or there is none)."""
        limiter = self._pool.limiter
        if limiter is None:
            return 0.0
        tokens = limiter.tokens(asyncio.get_running_loop().time())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / limiter.rate

    def on_capacity(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever a worker frees up or the worker count changes."""
        self._pool.on_capacity(listener)

    def submit(self, task: LeasedTask, retries: int, backoff_s: float | None) -> bool:
        """List ``task`` and queue it for a worker; False while the manager stops (its lease goes back)."""
        records.bind(task, retries, self._options.retry_delay_s if backoff_s is None else backoff_s)
        if not self._intake.open:
            return False  # leased while the manager stops: the lease is handed back with the others
        self._registry.add(task, records.key(task))
        self._scheduler.ready.push(task)
        pool = self._pool
        if pool.busy < pool.capacity:
            pool.kick()
        return True

    def withdraw(self, task: LeasedTask) -> bool:
        """Take ``task`` out of the ready queues if it still waits there."""
        return self._scheduler.ready.remove(task)

    def finish(self, task: LeasedTask, status: TaskStatus, result: Any, error: BaseException | None) -> Pending:
        """Make ``task`` terminal here."""
        return self._finisher.finish(task, status, result, error)

    def forget(self, task: LeasedTask) -> None:
        """Drop ``task``: this node no longer holds it."""
        self._registry.forget(task)

    def retrying(self, task: LeasedTask, delay_s: float, attempt: int) -> Pending:
        """Report a scheduled retry (the on_retry event)."""
        events = self._events
        return events.retrying(task, delay_s, attempt) if events.has_retry else None

    def lose(self, task: LeasedTask, why: str) -> None:
        """Cancel the running attempt of ``task`` (its lease is lost); ``ctx.cancel_reason`` says ``why``."""
        self._attempts.interrupt(task, TaskStatus.CANCELLED, why)
