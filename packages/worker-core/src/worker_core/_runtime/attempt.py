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

:class:`TaskContext` is this module's record of one attempt: only this module changes it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, final

from worker_core import task as records
from worker_core.errors import TaskCancelledError, TaskTimeoutError
from worker_core.status import TaskStatus

from .deadlines import Deadlines
from .processes import ProcessContext

if TYPE_CHECKING:
    from worker_core.events import EventPipeline
    from worker_core.task import Task

    from .outcomes import Finisher, Settle
    from .processes import ProcessRunner
    from .threads import ThreadRunner

__all__ = ("CURRENT_CONTEXT", "AttemptRunner", "CancelEvent", "Outcome", "TaskContext")

logger = logging.getLogger("worker_core.manager")

_COMPLETED: Final = TaskStatus.COMPLETED
_FAILED: Final = TaskStatus.FAILED
_CANCELLED: Final = TaskStatus.CANCELLED
_DEADLINE: Final = TaskStatus.DEADLINE_EXCEEDED
_copy_context = contextvars.copy_context
_isawaitable = inspect.isawaitable
if sys.version_info >= (3, 12):
    # Eager: the attempt runs at once, up to its first suspension, inside this call (no loop turn).
    _new_task: Callable[..., asyncio.Task[Any]] = functools.partial(asyncio.Task, eager_start=True)
else:
    _new_task = asyncio.Task

#: What one attempt ended with: (status, result, error). ``COMPLETED`` means success.
Outcome = tuple[TaskStatus, Any, "BaseException | None"]


class CancelEvent(threading.Event):
    """The cancellation flag of one attempt: a :class:`threading.Event` that is also true once set.

    ``if ctx.cancelled:`` reads as it should, and a plain function can ``ctx.cancelled.wait(1.0)``.
    """

    def __bool__(self) -> bool:
        return self.is_set()


@final
class TaskContext:
    """What one attempt of a task receives: the task, the attempt number, its deadline and a cancel flag.

    ``deadline`` is on the :func:`time.monotonic` clock (``None`` when the attempt has no timeout);
    :meth:`remaining` gives the seconds left. ``cancelled`` is a :class:`CancelEvent` (a
    :class:`threading.Event` that is truthy once set) set when the attempt is cancelled or its deadline
    passes: a plain (threaded) function polls it to stop early.
    """

    __slots__ = ("_cancels", "_event", "_open", "_reason", "_runner", "_watch", "_why", "attempt", "deadline", "task")

    def __init__(self, task: Task[Any], attempt: int, deadline: float | None) -> None:
        self.task = task
        self.attempt = attempt
        self.deadline = deadline
        self._event: CancelEvent | None = None  # made on first use: most attempts never look
        self._reason: TaskStatus | None = None  # why the runtime interrupted this attempt, if it did
        self._runner: asyncio.Task[Any] | None = None  # the asyncio task of the attempt, once it has suspended
        self._open = False  # the task's code (or its on_start hook) runs: a cancel of the runner interrupts it
        self._cancels = 0  # how often the runtime cancelled the runner (it uncancels as often)
        self._watch: Any = None  # the deadline watch, taken once the attempt suspends
        self._why: str | None = None  # the runtime's own words for an interruption (a lost durable lease)

    @property
    def cancelled(self) -> CancelEvent:
        """Set when this attempt is cancelled or times out."""
        event = self._event
        if event is None:
            event = self._event = CancelEvent()
            if self._reason is not None:
                event.set()
        return event

    @property
    def cancel_reason(self) -> str | None:
        """Why the runtime interrupted this attempt (``None`` while it was not).

        ``"cancelled"``, ``"deadline exceeded"``, or the runtime's own reason, such as a lost durable lease.
        """
        reason = self._reason
        if reason is None:
            return None
        if self._why is not None:
            return self._why
        return "deadline exceeded" if reason is _DEADLINE else "cancelled"

    @property
    def task_id(self) -> uuid.UUID:
        """The id of the task this attempt belongs to."""
        return self.task.id

    @property
    def metadata(self) -> dict[str, str]:
        """The task's metadata (trace context, gRPC metadata); empty when it has none."""
        metadata = self.task.metadata
        if metadata is None:
            metadata = self.task.metadata = {}
        return metadata

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id}, attempt={self.attempt})"


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
        "_processes",
        "_release",
        "_settle",
        "_threads",
        "_time",
        "_timeout_s",
        "live",
        "running",
    )

    def __init__(
        self,
        *,
        events: EventPipeline,
        threads: ThreadRunner,
        processes: ProcessRunner | None = None,
        finisher: Finisher,
        settle: Settle,
        release: Callable[[], None],
        timeout_s: float | None,
    ) -> None:
        self._events = events
        self._threads = threads
        self._processes = processes
        self._finisher = finisher
        self._settle = settle
        self._release = release  # a pooled attempt gives its worker slot back through this
        self._timeout_s = timeout_s
        self._deadlines = Deadlines(timeout_s, self._expired)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base: contextvars.Context | None = None
        self._time: Callable[[], float] = time.monotonic
        self.live: set[TaskContext] = set()  # attempts that suspended at least once and have not ended
        self.running = 0  # attempts executing the task's code now

    def open(self, loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
        """Run attempts on ``loop``, each in a copy of ``context``."""
        self._loop = loop
        self._base = context
        # The loop's clock: time.monotonic itself when that is what loop.time() returns (one call less).
        self._time = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        self._deadlines.open(loop)

    def close(self) -> None:
        """Forget every deadline (the manager stopped)."""
        self._deadlines.close()

    def runners(self) -> set[asyncio.Task[Any]]:
        """The asyncio tasks of the attempts still running."""
        return {ctx._runner for ctx in self.live if ctx._runner is not None}

    def start(
        self, task: Task[Any], timeout_s: float | None = None, *, pooled: bool = True
    ) -> asyncio.Task[Outcome | None]:
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
        now = self._time()
        ctx = TaskContext(task, task.attempts + 1, None if timeout_s is None else now + timeout_s)
        records.begin(task, now, ctx)
        runner = _new_task(self._run(task, ctx, timeout_s, pooled), loop=loop, context=base.copy())
        if not runner.done():
            ctx._runner = runner
            self.live.add(ctx)
            # Only an attempt that suspends can be interrupted at its deadline: one that ran to its end inside
            # this call (an eager start) needs no watch.
            if timeout_s is not None:
                ctx._watch = self._deadlines.watch(ctx, timeout_s)
            reason = ctx._reason  # interrupted before it first suspended (it cancelled itself, say)
            if reason is not None and ctx._open and (reason is _DEADLINE or records.is_async(task)):
                _cancel(ctx)
        return runner

    def interrupt(self, task: Task[Any], reason: TaskStatus, why: str | None = None) -> None:
        """Stop the running attempt of ``task`` for ``reason``: an async one at once, a thread one when it returns.

        ``why`` is what ``ctx.cancel_reason`` says (by default the reason's own words).
        """
        ctx = records.current(task)
        if ctx is not None and _interrupt(ctx, reason, why) and (reason is _DEADLINE or records.is_async(task)):
            _cancel(ctx)

    def give_up(self, task: Task[Any]) -> None:
        """Stop waiting for the running attempt of ``task`` (a stop past its bound): its thread is abandoned."""
        ctx = records.current(task)
        if ctx is not None:
            _interrupt(ctx, _CANCELLED)
            _cancel(ctx)

    def _expired(self, ctx: TaskContext) -> None:
        """The deadline of ``ctx``'s attempt passed: it ends now (a thread attempt's thread is abandoned)."""
        if records.current(ctx.task) is ctx:
            _interrupt(ctx, _DEADLINE)
            _cancel(ctx)

    async def _run(self, task: Task[Any], ctx: TaskContext, timeout_s: float | None, pooled: bool) -> Outcome | None:
        CURRENT_CONTEXT.set(ctx)
        status = _COMPLETED
        result: Any = None
        error: BaseException | None = None
        self.running += 1
        executing = True
        ctx._open = True
        try:
            events = self._events
            span = None
            try:
                if events.has_start:
                    pending = events.starting(task)
                    if pending is not None:
                        await pending
                if ctx._reason is not None:  # interrupted before its code began
                    raise _NotStarted()
                if events.tracer is not None:
                    span = events.open_span(task, ctx)
                if records.is_async(task):
                    result = await records.run_async(task, ctx)
                else:
                    processes = self._processes
                    if processes is None:
                        result = await self._threads.run(task.execute, ctx, _copy_context())
                    else:  # a pool process: pickled there and back, the context as a snapshot
                        result = await processes.run(task.execute, ProcessContext.of(ctx))
                    if _isawaitable(result):  # a plain callable that returned a coroutine: run it here
                        result = await result
            except BaseException as exc:
                ctx._open = False
                result = None
                status, error = self._classify(ctx, exc, timeout_s)
                if span is not None:
                    events.close_span(span, exc)
            else:
                ctx._open = False
                if ctx._cancels:
                    await _absorb_cancels(ctx)  # ours, swallowed by the task's code: a clean return wins
                if span is not None:
                    events.close_span(span, None)
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
            records.set_current(task, None)
            if ctx._watch is not None:
                self._deadlines.forget(ctx._watch)
            if pooled:
                self._release()
            self.live.discard(ctx)
        return None if pooled else (status, result, error)  # only execute_task reads the outcome

    @staticmethod
    def _classify(ctx: TaskContext, exc: BaseException, timeout_s: float | None) -> tuple[TaskStatus, BaseException]:
        """The status and error of an attempt whose code raised ``exc`` (a ``_NotStarted``: it never ran)."""
        runner = ctx._runner
        if runner is not None:
            for _ in range(ctx._cancels):
                runner.uncancel()  # every cancel of ours is consumed here
        ctx._cancels = 0
        why = ctx._reason
        task = ctx.task
        if why is _DEADLINE:
            if isinstance(exc, Exception) and not records.is_async(task):
                return _DEADLINE, exc  # a plain function that saw ctx.cancelled and raised in time
            return _DEADLINE, TaskTimeoutError(f"task {task.id} exceeded its timeout of {timeout_s}s")
        if why is not None:
            return _CANCELLED, TaskCancelledError(f"task {task.id} was cancelled")
        me = asyncio.current_task()
        if isinstance(exc, asyncio.CancelledError) and me is not None and me.cancelling():
            logger.warning("attempt of task %s was cancelled from outside the manager", task.id)
            return _CANCELLED, TaskCancelledError(f"task {task.id} was cancelled from outside the manager")
        return _FAILED, exc


class _NotStarted(BaseException):
    """Raised inside an attempt interrupted before its code began (never escapes this module)."""


def _interrupt(ctx: TaskContext, reason: TaskStatus, why: str | None = None) -> bool:
    """Set why ``ctx``'s attempt is to stop (the first reason wins) and its cancel flag; False if already set."""
    if ctx._reason is not None:
        return False
    ctx._reason = reason
    ctx._why = why
    event = ctx._event
    if event is not None:
        event.set()
    return True


def _cancel(ctx: TaskContext) -> None:
    """Cancel the attempt's asyncio task while the task's code runs (counted, to be uncancelled)."""
    runner = ctx._runner
    if runner is not None and ctx._open:
        ctx._cancels += 1
        runner.cancel()


async def _absorb_cancels(ctx: TaskContext) -> None:
    """Consume this attempt's own cancels, which the task's code swallowed, so that nothing later sees them.

    A cancel that reached the runner while it was running (not waiting) is delivered at its next suspension:
    one loop turn takes it here rather than in the settling that follows. A cancellation from elsewhere
    that arrives with it propagates.
    """
    runner = ctx._runner
    assert runner is not None
    cancels, ctx._cancels = ctx._cancels, 0
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        if runner.cancelling() > cancels:
            raise
    finally:
        for _ in range(cancels):
            runner.uncancel()
