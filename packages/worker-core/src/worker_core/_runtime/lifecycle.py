"""A manager's lifecycle: new -> starting -> running -> draining -> stopping -> stopped, and its event loop.

- A manager is bound to the event loop it is first used on; any use from another loop raises
  :class:`~worker_core.errors.WrongLoopError`.
- ``start()`` runs once, in a task of its own that concurrent callers share. A caller cancelled while it
  waits stops waiting; when it was the last one, the start is abandoned and undone (the manager is new
  again and may be started later). A stop during the start is honoured: the start is cut short and the
  callers waiting for it get :class:`~worker_core.errors.ManagerStoppedError`.
- A stop runs once, in a task of its own, shielded from its callers: a cancelled caller stops waiting, the
  stop goes on. Its synchronous first step (intake closed; for a stop *now* every timer stopped and everything
  cancelled) happens before the first ``await``. A graceful stop drains until done or until the earliest
  deadline a caller gave, then stops now. Stopping now waits for what was cancelled at most the stop's bound,
  then gives up on what is left and reports it.
- If the event loop is torn down while the manager runs (``asyncio.run`` returning without a stop), the
  manager notices (its keeper task is cancelled) and stops now on its own, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from enum import StrEnum
from typing import Any

from worker_core.errors import ManagerStoppedError, WrongLoopError

from .engine import Engine

__all__ = ("Lifecycle", "ManagerState")

logger = logging.getLogger("worker_core.manager")

_get_running_loop = asyncio.get_running_loop


class ManagerState(StrEnum):
    """Where a :class:`~worker_core.TaskManager` is in its life; it moves forward only."""

    NEW = "new"
    """Constructed (tasks may be registered already); not started."""
    STARTING = "starting"
    """``start()`` is acquiring what the manager needs (a durable backend connects)."""
    RUNNING = "running"
    """Tasks run."""
    DRAINING = "draining"
    """A graceful stop: nothing new is accepted, queued and running tasks finish."""
    STOPPING = "stopping"
    """Everything left is being cancelled, within the stop's bound."""
    STOPPED = "stopped"
    """Done; a manager does not start again."""


class Lifecycle:
    """The state machine of one manager: loop binding, one shared start, one shielded stop, the keeper."""

    def __init__(self, engine: Engine, stop_timeout_s: float) -> None:
        self._engine = engine
        self._stop_timeout_s = stop_timeout_s
        self.state = ManagerState.NEW
        self.loop: asyncio.AbstractEventLoop | None = None
        self._start_task: asyncio.Task[Any] | None = None
        self._context: contextvars.Context | None = None  # the context start() was called in: each attempt's
        self._start_waiters = 0
        self._stop_task: asyncio.Task[None] | None = None
        self._now = False  # the stop goes straight to cancelling (stop_now, a deadline, the loop going away)
        self._bound_s = stop_timeout_s
        self._drain_deadline = math.inf
        self._wake_drain: asyncio.Future[None] | None = None
        self.drained = False  # the graceful part of the stop finished (nothing was left to cancel)
        self._keeper: asyncio.Task[None] | None = None
        self._keeper_done = False

    # ------------------------------------------------------------------------------------------ loop

    def bind(self) -> asyncio.AbstractEventLoop:
        """The manager's loop, bound on first use.

        Raises:
            WrongLoopError: called from another event loop than the manager's.
        """
        loop = _get_running_loop()
        if loop is not self.loop:
            if self.loop is not None:
                closed = " (now closed)" if self.loop.is_closed() else ""
                raise WrongLoopError(
                    f"this manager belongs to another event loop{closed}, the one it was first used on; "
                    "use one manager per loop (register_task_threadsafe() registers from other threads)"
                )
            self.loop = loop
            self._engine.bind_loop(loop)
        return loop

    @property
    def running(self) -> bool:
        loop = self.loop
        return (
            self.state in (ManagerState.RUNNING, ManagerState.DRAINING, ManagerState.STOPPING)
            and loop is not None
            and not loop.is_closed()
        )

    # ------------------------------------------------------------------------------------------ start

    async def start(self) -> None:
        loop = self.bind()
        state = self.state
        if state is ManagerState.RUNNING:
            return
        if state is not ManagerState.NEW and state is not ManagerState.STARTING:
            raise ManagerStoppedError("the task manager is stopped (a manager does not start again)")
        if state is ManagerState.NEW:
            self.state = ManagerState.STARTING
            self._context = contextvars.copy_context()
            self._start_task = loop.create_task(self._acquire())
        task = self._start_task
        assert task is not None
        self._start_waiters += 1
        try:
            backend = await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is None or not me.cancelling():  # the start itself was cut short: by a stop
                raise ManagerStoppedError("the task manager was stopped while it started") from None
            if self._start_waiters == 1 and self.state is ManagerState.STARTING:
                await self._undo_start(task)  # nobody waits for this start any more
            raise
        finally:
            self._start_waiters -= 1
        if self.state is ManagerState.STARTING:
            # The first caller to resume starts the parts, in its own step: nothing runs before it returns,
            # so what it configures right after `start()` (a tracer, hooks) applies to the first task.
            assert self._context is not None
            self._engine.activate(loop, self._context, backend)
            self.state = ManagerState.RUNNING
            self._keeper = loop.create_task(self._keep(), name="worker-core-keeper", context=self._context)
        elif self.state is not ManagerState.RUNNING:
            raise ManagerStoppedError("the task manager was stopped while it started")

    async def _acquire(self) -> Any:
        try:
            return await self._engine.acquire()
        except BaseException:
            if self.state is ManagerState.STARTING:
                self.state = ManagerState.NEW  # nothing was started: it may be tried again
            raise

    async def _undo_start(self, task: asyncio.Task[Any]) -> None:
        """Abandon a start nobody waits for: cancel it, or release what it acquired; the manager is new again."""
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is None:
            await self._engine.abort_open()
        if self.state is ManagerState.STARTING:
            self.state = ManagerState.NEW

    async def _keep(self) -> None:
        """Do nothing until the stop; cancelled by anybody else, the loop is going away: stop now."""
        try:
            await _get_running_loop().create_future()
        except asyncio.CancelledError:
            if self._keeper_done:
                raise
            logger.warning("the event loop is shutting down with a task manager running: stopping it now")
            stop = self.begin_stop(now=True, bound_s=self._stop_timeout_s)
            if stop is not None:
                await asyncio.gather(stop, return_exceptions=True)

    # ------------------------------------------------------------------------------------------- stop

    async def stop_graceful(self, timeout_s: float | None) -> None:
        """``TaskManager.stop_graceful``: drain for up to ``timeout_s``, then stop; returns at once inside a task.

        Raises:
            TimeoutError: ``timeout_s`` passed first (what was left has been cancelled; the manager stopped).
        """
        loop = self.bind()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        stop = self.begin_stop(now=False, drain_timeout_s=timeout_s)
        if stop is None or self._engine.within_own_task():
            return
        await asyncio.shield(stop)
        if not self.drained and deadline is not None and loop.time() >= deadline:
            raise TimeoutError(f"stop_graceful: work was left after {timeout_s}s and has been cancelled")

    async def stop_now(self, bound_s: float | None) -> None:
        """``TaskManager.stop_now``: cancel everything, wait for it up to ``bound_s`` (default: ``stop_timeout``)."""
        self.bind()
        stop = self.begin_stop(now=True, bound_s=bound_s)
        if stop is not None:
            await asyncio.shield(stop)

    def begin_stop(self, *, now: bool, bound_s: float | None = None, drain_timeout_s: float | None = None) -> Any:
        """Start (or escalate) the stop; its task to await, or ``None`` when the manager already stopped."""
        state = self.state
        if state is ManagerState.STOPPED:
            return None
        loop = self.loop
        assert loop is not None
        if bound_s is not None:
            self._bound_s = min(self._bound_s, bound_s) if self._stop_task is not None else bound_s
        if now:
            self._now = True
            if state is ManagerState.STARTING and self._start_task is not None:
                self._start_task.cancel()
            self.state = ManagerState.STOPPING
            self._engine.shutdown.begin(now=True)
            self._wake()
        else:
            if drain_timeout_s is not None:
                self._drain_deadline = min(self._drain_deadline, loop.time() + drain_timeout_s)
                self._wake()
            if state in (ManagerState.NEW, ManagerState.STARTING, ManagerState.RUNNING):
                self.state = ManagerState.DRAINING
                self._engine.shutdown.begin(now=False)
        if self._stop_task is None:
            self._stop_task = loop.create_task(self._run_stop(), name="worker-core-stop")
        return self._stop_task

    def _wake(self) -> None:
        future = self._wake_drain
        if future is not None and not future.done():
            future.set_result(None)

    async def _run_stop(self) -> None:
        loop = _get_running_loop()
        start = self._start_task
        if start is not None and not start.done():
            await asyncio.gather(start, return_exceptions=True)
        if not self._now and self._keeper is not None:  # never started: nothing to drain
            with contextlib.suppress(asyncio.CancelledError):  # cancelled from outside (the loop goes away): stop now
                self.drained = await self._drain(loop)
        self.state = ManagerState.STOPPING
        self._engine.shutdown.begin(now=True)
        keeper = self._keeper
        if keeper is not None:
            self._keeper_done = True
            if not keeper.done() and keeper is not asyncio.current_task():
                keeper.cancel()
        await self._engine.shutdown.halt(self._bound_s)
        self.state = ManagerState.STOPPED

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> bool:
        """The graceful part: True when everything finished, False when a deadline or a stop now cut it short."""
        drain = loop.create_task(self._engine.shutdown.drain(), name="worker-core-drain")
        try:
            while not drain.done() and not self._now:
                left = self._drain_deadline - loop.time()
                if left <= 0:
                    return False
                self._wake_drain = loop.create_future()
                await asyncio.wait(
                    {drain, self._wake_drain}, timeout=None if left == math.inf else left, return_when="FIRST_COMPLETED"
                )
            return drain.done() and not drain.cancelled() and drain.exception() is None
        finally:
            self._wake_drain = None
            if not drain.done():
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
            elif not drain.cancelled() and (error := drain.exception()) is not None:
                logger.error("draining the task manager failed; stopping now", exc_info=error)
