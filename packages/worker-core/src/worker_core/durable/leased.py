"""A task leased from a durable backend, what the durable runtime needs from the engine, and handler binding.

:class:`LeasedTask` is what the lease loop turns a lease into: an ordinary :class:`~worker_core.task.Task`
(so it waits in the same ready queues and runs through the same attempt path) that also carries its lease.
:class:`WorkSink` is the whole of the engine the durable runtime and its policy may use.
:func:`bind_handler` turns a handler ``fn(ctx, payload)`` and a decoded payload into the task's ``execute(ctx)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from worker_core.task import Task, TaskContext

if TYPE_CHECKING:
    from worker_core.events import Pending
    from worker_core.status import TaskStatus

    from .types import DurableTaskLease

__all__ = ("LeasedTask", "WorkSink", "bind_handler")


class LeasedTask(Task[Any]):
    """A task leased from a durable backend: its ``name`` is the handler name, ``lease`` the delivery.

    ``lost`` is set (to why) once this node knows the lease is lost: the attempt is cancelled and the task is
    neither acked, nacked nor dead-lettered from here (another consumer holds it, or will).
    """

    __slots__ = ("lease", "lost")

    durable = True

    def __init__(self, execute: Callable[[TaskContext], Any], lease: DurableTaskLease, **fields: Any) -> None:
        super().__init__(execute, **fields)
        self.lease = lease
        self.lost: str | None = None


class WorkSink(Protocol):
    """What the durable runtime needs from the engine."""

    def free_slots(self) -> int:
        """Tasks that could start now: free workers minus tasks already waiting for one."""
        ...

    def token_wait(self) -> float:
        """Seconds until the rate limiter has a token (0.0: it has one, or there is none)."""
        ...

    def tokens(self) -> float:
        """Tokens the rate limiter holds now (``inf`` without one)."""
        ...

    def on_capacity(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever a worker frees up or the worker count changes."""
        ...

    def submit(self, task: LeasedTask, retries: int, backoff_s: float | None) -> bool:
        """List ``task`` and queue it for a worker (``backoff_s`` ``None``: the manager's retry delay).

        False when the manager is stopping: the task was not queued and its lease is to be handed back.
        """
        ...

    def withdraw(self, task: LeasedTask) -> bool:
        """Take ``task`` out of the ready queues if it still waits there."""
        ...

    def finish(self, task: LeasedTask, status: TaskStatus, result: Any, error: BaseException | None) -> Pending:
        """Make ``task`` terminal here."""
        ...

    def forget(self, task: LeasedTask) -> None:
        """Drop ``task``: this node no longer holds it."""
        ...

    def retrying(self, task: LeasedTask, delay_s: float, attempt: int) -> Pending:
        """Report a scheduled retry (the on_retry event and its counter)."""
        ...

    def lose(self, task: LeasedTask, why: str) -> None:
        """The lease of ``task`` is lost: cancel its running attempt (``ctx.cancel_reason`` is ``why``)."""
        ...


def bind_handler(fn: Callable[..., Any], payload: Any) -> Callable[[TaskContext], Any]:
    """``execute(ctx)`` for a handler ``fn(ctx, payload)``, async when ``fn`` is."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004

        async def run_async(ctx: TaskContext) -> Any:
            return await fn(ctx, payload)

        return run_async

    return _Bound(fn, payload)


class _Bound:
    """``fn(ctx, payload)`` as a plain handler's ``execute(ctx)``: an object, so a process pool can pickle it."""

    __slots__ = ("fn", "payload")

    def __init__(self, fn: Callable[..., Any], payload: Any) -> None:
        self.fn = fn
        self.payload = payload

    def __call__(self, ctx: TaskContext) -> Any:
        return self.fn(ctx, self.payload)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Bound, (self.fn, self.payload))
