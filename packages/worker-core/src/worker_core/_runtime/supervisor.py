"""The owner of a manager's long-lived asyncio tasks: it starts them, restarts one that dies, stops them all.

A supervised task (the durable lease loop, lease renewal) is expected to run until the manager stops. When
one ends any other way (it raised, or a ``CancelledError`` escaped it that nobody here asked for), the
supervisor logs it with its traceback and starts it again after a short, growing delay, so a bug or a
misbehaving backend can neither end the work silently nor spin the CPU. One-shot background work (an async
hook of a task finished by a timer) is owned here too, so a stop can wait for it, bounded.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ("Supervisor",)

logger = logging.getLogger("worker_core.manager")

_RESTART_MIN_S = 0.05
_RESTART_MAX_S = 5.0

Factory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """Long-lived tasks by name, restarted when they die; plus owned one-shot background tasks."""

    __slots__ = ("_background", "_closing", "_context", "_factories", "_failures", "_loop", "_tasks", "_timers")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: contextvars.Context | None = None
        self._factories: dict[str, Factory] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False

    def open(self, loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
        self._loop = loop
        self._context = context

    def supervise(self, name: str, factory: Factory) -> None:
        """Run ``factory()`` as the long-lived task ``name`` until :meth:`close`, restarting it when it dies."""
        self._factories[name] = factory
        self._failures[name] = 0
        self._launch(name)

    def _launch(self, name: str) -> None:
        self._timers.pop(name, None)
        loop = self._loop
        if self._closing or loop is None:
            return
        task = loop.create_task(self._factories[name](), name=f"worker-core-{name}", context=self._context)
        self._tasks[name] = task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        name = task.get_name().removeprefix("worker-core-")
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if self._closing:
            return
        if task.cancelled():
            logger.error("worker-core %s was cancelled from outside the manager; restarting it", name)
        else:
            error = task.exception()
            if error is None:
                logger.error("worker-core %s returned while the manager runs; restarting it", name)
            else:
                logger.error("worker-core %s died; restarting it", name, exc_info=error)
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay = min(_RESTART_MAX_S, _RESTART_MIN_S * 2 ** min(failures - 1, 10))
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._timers[name] = loop.call_later(delay, self._launch, name)

    def task(self, name: str) -> asyncio.Task[None] | None:
        """The running task ``name``, if it runs."""
        return self._tasks.get(name)

    def stop_restarts(self) -> None:
        """Restart nothing from now on (a stop began: a supervised task that ends now is meant to)."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def healthy(self, name: str) -> None:
        """``name`` is working again (its restart delay starts from the minimum next time)."""
        self._failures[name] = 0

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` once, owned: a stop waits for it (bounded)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return
        task = loop.create_task(coro, context=self._context)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def pending_background(self) -> set[asyncio.Task[Any]]:
        """Background tasks still running."""
        return set(self._background)

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel every long-lived task (no restarts from now on); the tasks to await."""
        self.stop_restarts()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return tasks
