"""The one attempt path: every attempt of every task runs here, in an asyncio task of its own.

Each attempt gets a fresh asyncio task, started with its own copy of the manager's context (eagerly on Python
3.12+, so an attempt that never suspends costs no loop turn), so context variables set by one attempt are
never seen by another. Whatever the task's code raises, ``BaseException`` included, ends the attempt with a
status; a cancellation counts as one only when the runtime asked for it (``cancel_task``, a timeout, a stop)
or when someone cancelled this attempt's asyncio task itself. A ``CancelledError`` that merely bubbles out of
the task's code (it awaited something another party cancelled) is a failure like any other exception.

Plain functions run on the :class:`~worker_core._runtime.threads.ThreadRunner`; at its deadline a thread
attempt ends ``DEADLINE_EXCEEDED`` at once and its thread is abandoned (it cannot be interrupted). On
``cancel_task`` or a stop, a thread attempt's cancel flag is set and the attempt waits for the function to
return (a clean return wins, as in go-worker) until its deadline, or a stop's bound, ends the wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any, Final

from worker_core import task as records
from worker_core.errors import TaskCancelledError, TaskTimeoutError
from worker_core.events import EventPipeline
from worker_core.status import TaskStatus
from worker_core.task import Task, TaskContext

from .deadlines import Deadlines
from .outcomes import Finisher, Settle
from .threads import ThreadRunner

__all__ = ("CURRENT_CONTEXT", "AttemptRunner", "Outcome")

logger = logging.getLogger("worker_core.manager")

_COMPLETED: Final = TaskStatus.COMPLETED
_FAILED: Final = TaskStatus.FAILED
_CANCELLED: Final = TaskStatus.CANCELLED
_DEADLINE: Final = TaskStatus.DEADLINE_EXCEEDED
if sys.version_info >= (3, 12):
    # Eager: the attempt runs at once, up to its first suspension, inside this call (no loop turn).
    _new_task: Callable[..., asyncio.Task[Any]] = functools.partial(asyncio.Task, eager_start=True)
else:
    _new_task = asyncio.Task
_current_task = asyncio.current_task
_copy_context = contextvars.copy_context
_isawaitable = inspect.isawaitable

#: What one attempt ended with: (status, result, error). ``COMPLETED`` means success.
Outcome = tuple[TaskStatus, Any, "BaseException | None"]

#: The context of the attempt running in the current asyncio task (each attempt has its own context copy).
CURRENT_CONTEXT: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("worker_core.current_context")


class AttemptRunner:
    """Starts attempts, interrupts them, and gives up on them; owns their asyncio tasks while they run."""

    __slots__ = (
        "_base",
        "_deadlines",
        "_events",
        "_finisher",
        "_loop",
        "_release",
        "_settle",
        "_threads",
        "_timeout_s",
        "runners",
        "running",
    )

    def __init__(
        self,
        *,
        events: EventPipeline,
        threads: ThreadRunner,
        finisher: Finisher,
        settle: Settle,
        release: Callable[[], None],
        timeout_s: float | None,
    ) -> None:
        self._events = events
        self._threads = threads
        self._finisher = finisher
        self._settle = settle
        self._release = release  # a pooled attempt gives its worker slot back through this
        self._timeout_s = timeout_s
        self._deadlines = Deadlines(timeout_s, self._expired)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base: contextvars.Context | None = None
        self.runners: set[asyncio.Task[Outcome]] = set()  # attempts that have suspended at least once, running
        self.running = 0  # attempts executing the task's code now

    def open(self, loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
        """Run attempts on ``loop``, each in a copy of ``context``."""
        self._loop = loop
        self._base = context
        self._deadlines.open(loop)

    def close(self) -> None:
        self._deadlines.close()

    def start(self, task: Task, timeout_s: float | None = None, *, pooled: bool = True) -> asyncio.Task[Outcome]:
        """Begin an attempt of the waiting ``task`` (``RUNNING`` at once) in its own asyncio task.

        ``timeout_s`` overrides the task's own timeout (``execute_task``). A ``pooled`` attempt holds a worker
        slot, given back when it ends.
        """
        loop = self._loop
        base = self._base
        assert loop is not None
        assert base is not None
        if timeout_s is None:
            timeout_s = task.timeout
            if timeout_s is None:
                timeout_s = self._timeout_s
        ctx = records.begin(task, loop.time(), timeout_s)
        coro = self._run(task, ctx, timeout_s, pooled)
        runner = _new_task(coro, loop=loop, context=base.copy())
        if not runner.done():
            self.runners.add(runner)
        return runner

    def interrupt(self, task: Task, reason: TaskStatus) -> None:
        """Stop the running attempt of ``task`` for ``reason``: an async one at once, a thread one when it returns."""
        ctx = records.current(task)
        if ctx is not None and records.interrupt(ctx, reason) and (records.is_async(task) or reason is _DEADLINE):
            records.cancel_runner(ctx)

    def give_up(self, task: Task) -> None:
        """Stop waiting for the running attempt of ``task`` (a stop past its bound): its thread is abandoned."""
        ctx = records.current(task)
        if ctx is not None:
            records.interrupt(ctx, _CANCELLED)
            records.cancel_runner(ctx)

    def _expired(self, ctx: TaskContext) -> None:
        """The deadline of ``ctx``'s attempt passed: it ends now (a thread attempt's thread is abandoned)."""
        if records.current(ctx.task) is ctx:
            records.interrupt(ctx, _DEADLINE)
            records.cancel_runner(ctx)

    async def _run(self, task: Task, ctx: TaskContext, timeout_s: float | None, pooled: bool) -> Outcome:
        me = _current_task()
        assert me is not None
        CURRENT_CONTEXT.set(ctx)
        watch = None if timeout_s is None else self._deadlines.watch(ctx, timeout_s)
        status = _COMPLETED
        result: Any = None
        error: BaseException | None = None
        self.running += 1
        executing = True
        try:
            events = self._events
            if events.has_start:
                pending = events.starting(task)
                if pending is not None:
                    await pending
            if records.reason(ctx) is None:
                span = None if events.tracer is None else events.open_span(task, ctx)
                raised: BaseException | None = None
                records.attach(ctx, me)
                try:
                    if records.is_async(task):
                        result = await task.execute(ctx)
                    else:
                        result = await self._threads.run(task.execute, ctx, _copy_context())
                        if _isawaitable(result):  # a plain callable that returned a coroutine: run it here
                            result = await result
                except BaseException as exc:
                    raised = exc
                    result = None
                    status, error = self._classify(ctx, exc, me, timeout_s)
                else:
                    for _ in range(records.detach(ctx)):
                        me.uncancel()  # our cancel, swallowed by the task's code: a clean return wins
                if span is not None:
                    events.close_span(span, raised)
                del raised
            else:  # interrupted before it began (while an on_start hook ran, or before this task's first step)
                status, error = self._classify(ctx, None, me, timeout_s)
            self.running -= 1
            executing = False
            pending = self._settle(task, status, result, error)
            if pending is not None:
                await pending
        except Exception as exc:  # a bug below the attempt (a backend adapter, say): the task must still end
            if executing:
                self.running -= 1
            logger.exception("settling the attempt of task %s failed", task.id)
            self._finisher.finish_soon(task, _FAILED, None, exc)
        except BaseException:
            # Cancelled from outside while a hook or the settling awaited (the loop is going away), or closed:
            # the task must not stay unfinished, and nothing more may be awaited.
            if executing:
                self.running -= 1
            self._finisher.finish_now(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            raise
        finally:
            records.end(task, ctx)
            if watch is not None:
                self._deadlines.forget(watch)
            if pooled:
                self._release()
            self.runners.discard(me)
        return status, result, error

    @staticmethod
    def _classify(
        ctx: TaskContext, exc: BaseException | None, me: asyncio.Task[Any], timeout_s: float | None
    ) -> tuple[TaskStatus, BaseException]:
        """The status and error of an attempt whose code raised ``exc`` (``None``: it never ran)."""
        for _ in range(records.detach(ctx)):
            me.uncancel()  # every cancel of ours is consumed here
        why = records.reason(ctx)
        task = ctx.task
        if why is _DEADLINE:
            if isinstance(exc, Exception) and not records.is_async(task):
                return _DEADLINE, exc  # a plain function that saw ctx.cancelled and raised in time
            return _DEADLINE, TaskTimeoutError(f"task {task.id} exceeded its timeout of {timeout_s}s")
        if why is not None:
            return _CANCELLED, TaskCancelledError(f"task {task.id} was cancelled")
        assert exc is not None
        if isinstance(exc, asyncio.CancelledError) and me.cancelling():
            logger.warning("attempt of task %s was cancelled from outside the manager", task.id)
            return _CANCELLED, TaskCancelledError(f"task {task.id} was cancelled from outside the manager")
        return _FAILED, exc
