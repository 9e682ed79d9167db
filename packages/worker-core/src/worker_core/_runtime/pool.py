"""The worker pool: how many attempts may run at once, and the dispatcher that starts waiting tasks.

There are no long-lived worker coroutines: a worker is a slot. Whenever a slot is free and a task is
ready, the dispatcher (a loop callback, never more than one scheduled) pops the next task by priority and
weighted round robin, takes a rate-limiter token, and starts the attempt in its own asyncio task; the attempt
gives its slot back when it ends. A task therefore leaves its queue only when it can start, and nothing can
kill a worker: there is none to kill.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from worker_core.task import Task

from .ratelimit import TokenBucket
from .scheduler import ReadyQueues

__all__ = ("WorkerPool",)

_BUDGET = 64  # attempts one dispatch may start before the loop runs its other callbacks (and polls I/O)


class WorkerPool:
    """Slots, the token bucket, and the dispatcher that fills free slots from the ready queues."""

    __slots__ = (
        "_context",
        "_dispatching",
        "_limiter",
        "_listeners",
        "_loop",
        "_open",
        "_ready",
        "_scheduled",
        "_start",
        "_token_timer",
        "busy",
        "capacity",
    )

    def __init__(self, ready: ReadyQueues, capacity: int) -> None:
        self._ready = ready
        self._start: Callable[[Task[Any]], Any] = _unwired
        self.capacity = capacity
        self.busy = 0  # slots held by running attempts
        self._limiter: TokenBucket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: contextvars.Context | None = None
        self._open = False
        self._scheduled = False  # a dispatch callback is pending
        self._dispatching = False
        self._token_timer: asyncio.TimerHandle | None = None
        self._listeners: list[Callable[[], None]] = []

    def start_with(self, start: Callable[[Task[Any]], Any]) -> None:
        """Begin attempts with ``start(task)`` (the attempt runner, which gives slots back via :meth:`released`)."""
        self._start = start

    def open(self, loop: asyncio.AbstractEventLoop, context: contextvars.Context, limiter: TokenBucket | None) -> None:
        """Start dispatching on ``loop`` (callbacks run in ``context``)."""
        self._loop = loop
        self._context = context
        self._limiter = limiter
        self._open = True
        self.kick()

    def close(self) -> None:
        """Start nothing more."""
        self._open = False
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None

    @property
    def limiter(self) -> TokenBucket | None:
        return self._limiter

    def free(self) -> int:
        """Slots that are free and not already promised to a ready task."""
        return self.capacity - self.busy - self._ready.size

    def on_capacity(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever a slot frees up or the capacity changes (the durable lease loop)."""
        self._listeners.append(listener)

    def set_capacity(self, capacity: int) -> None:
        """Let ``capacity`` attempts run at once; running ones past it finish, none starts until below it."""
        self.capacity = capacity
        self.kick()
        for listener in self._listeners:
            listener()

    def kick(self) -> None:
        """Ask for a dispatch soon (coalesced: one pending callback at most)."""
        if self._scheduled or not self._open:
            return
        loop = self._loop
        assert loop is not None
        self._scheduled = True
        loop.call_soon(self._dispatch, context=self._context)

    def released(self) -> None:
        """A pooled attempt ended: its slot is free, and the next ready task starts now (in this step)."""
        self.busy -= 1
        if self._ready.size and not self._dispatching and self._open:
            self._fill()
        if self._listeners:
            for listener in self._listeners:
                listener()

    def _dispatch(self) -> None:
        self._scheduled = False
        if self._open:
            self._fill()

    def _fill(self) -> None:
        """Start ready tasks while slots are free.

        Never re-entered: an attempt that ends inside it (eagerly) frees its slot for this same loop.
        """
        ready = self._ready
        limiter = self._limiter
        loop = self._loop
        start = self._start
        budget = _BUDGET
        self._dispatching = True
        try:
            while self.busy < self.capacity and ready.size:
                if not budget:
                    self.kick()  # the rest after the loop has had a turn
                    return
                budget -= 1
                if limiter is not None:
                    wait_s = limiter.try_take(loop.time())  # type: ignore[union-attr]
                    if wait_s:
                        self._wait_for_token(wait_s)
                        return
                task = ready.pop()
                assert task is not None
                self.busy += 1
                start(task)  # may run the whole attempt now (eager start) and give the slot back
        finally:
            self._dispatching = False

    def _wait_for_token(self, wait_s: float) -> None:
        if self._token_timer is None:
            loop = self._loop
            assert loop is not None
            self._token_timer = loop.call_later(wait_s, self._token_due, context=self._context)

    def _token_due(self) -> None:
        self._token_timer = None
        self.kick()


def _unwired(task: Task[Any]) -> None:  # pragma: no cover - start_with() is called at construction
    raise RuntimeError("the worker pool has no attempt runner")
