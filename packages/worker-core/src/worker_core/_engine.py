"""The engine under :class:`~worker_core.TaskManager`: workers, attempts, retries and finishing.

Everything here runs on one event loop, so plain counters need no locks. A worker coroutine takes a
task from the ready queues only when it is free (there is no dispatch buffer), after the rate limiter
gave it a token. An ``async`` task is awaited directly in the worker (no extra asyncio task per attempt,
traced or not); a plain function runs in the manager's bounded thread pool.

The seam the durable loop (``_durable.py``) uses: it pushes leased tasks into the same ready queues
(``_ready.push`` + ``_wake_one``), so weights, priorities and the rate limiter apply; a task with a
lease (``task._lease``) has the outcome of each attempt go to ``_durable_outcome`` instead of the
in-memory retry path; and ``_capacity_hook`` is called whenever a worker frees up after a durable
attempt, so the loop leases only what free workers can start (``_max_workers - _n_busy - _ready.size``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from ._scheduler import PRIORITY_MAX, PRIORITY_MIN
from ._state import EngineState, emit
from .backoff import next_backoff, retry_jitter
from .errors import Abort, InvalidTaskError, QueueFullError, Retry, TaskCancelledError, TaskTimeoutError
from .hooks import call_hook
from .status import TaskStatus
from .task import Task, TaskContext

if TYPE_CHECKING:
    from .protocols import TaskTracer

__all__ = ("Engine", "Outcome")

logger = logging.getLogger("worker_core.manager")

_QUEUED = TaskStatus.QUEUED
_RUNNING = TaskStatus.RUNNING
_RETRYING = TaskStatus.RETRYING
_COMPLETED = TaskStatus.COMPLETED
_FAILED = TaskStatus.FAILED
_CANCELLED = TaskStatus.CANCELLED
_DEADLINE = TaskStatus.DEADLINE_EXCEEDED
_YIELD_EVERY = 32  # a worker whose tasks never suspend still lets the loop breathe this often

#: What one attempt ended with: (status it points to, result, error). ``COMPLETED`` means success,
#: ``CANCELLED`` a cancellation, ``DEADLINE_EXCEEDED`` a timeout and ``FAILED`` an exception.
Outcome = tuple[TaskStatus, Any, BaseException | None]


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
class Engine(EngineState):
    """The run/finish machinery shared by the public manager and the durable loop."""

    def _prepare(self, task: Task) -> None:
        """Validate a task's mutable fields and apply the manager's defaults."""
        priority: object = task.priority
        weight: object = task.weight
        queue: object = task.queue
        run_at: object = task.run_at
        execute: object = task.execute
        if (
            type(priority) is not int
            or type(weight) is not int
            or type(queue) is not str
            or not callable(execute)
            or (run_at is not None and not isinstance(run_at, datetime))
            or not PRIORITY_MIN <= priority <= PRIORITY_MAX
        ):
            try:
                _check_task_fields(task)  # the exact checks, for what the quick ones did not pass
            except InvalidTaskError:
                task._status = TaskStatus.INVALID
                raise
        name = task.queue
        if name:
            name = name.strip()
        task.queue = name or self._default_queue
        if task.weight <= 0:
            task.weight = 1
        retries = task.retries
        task._retries_left = self._max_retries if retries is None else min(retries, self._max_retries)
        delay = task.retry_delay
        task._backoff = self._retry_delay_s if delay is None else delay

    # ----------------------------------------------------------------------------------------- workers

    def _spawn_workers(self) -> None:
        loop = self._loop
        assert loop is not None
        slots = self._worker_ctx
        if len(slots) < self._max_workers:  # grown in place: workers hold these lists
            slots.extend([None] * (self._max_workers - len(slots)))
            self._worker_busy.extend([False] * (self._max_workers - len(self._worker_busy)))
        for index in range(self._max_workers):
            worker = self._workers.get(index)
            if worker is None or worker.done():
                self._workers[index] = loop.create_task(self._worker(index), name=f"worker-core-worker-{index}")

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        # The loop's clock; time.monotonic itself when that is what loop.time() returns (one call less).
        loop_time = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        ready = self._ready
        busy = self._worker_busy
        default_timeout = self._timeout_s
        worker_ctx = self._worker_ctx
        throttled = self._throttled
        me = asyncio.current_task()
        assert me is not None
        ran = 0
        try:
            while not self._closing and index < self._max_workers:
                if not ready.size:
                    waiter = loop.create_future()
                    self._idle.append(waiter)
                    await waiter
                    continue
                limiter = self._limiter
                if limiter is not None:
                    wait_s = limiter.try_take(loop_time())
                    if wait_s:
                        throttled.add(index)  # stop cancels this sleep
                        try:
                            await asyncio.sleep(wait_s)
                        finally:
                            throttled.discard(index)
                        continue
                task = ready.pop()
                if task is None:  # pragma: no cover - size was checked just above
                    continue
                busy[index] = True
                self._n_busy += 1
                try:
                    outcome: Outcome | None
                    if self._fast_attempts and task._is_async:
                        # The hot path: ``_attempt`` inlined for an async task with nothing to call
                        # before it starts (no on_start hook or instrumentation). Same semantics.
                        task._status = _RUNNING
                        attempt = task._attempt = task._attempt + 1
                        start = task._started_mono = loop_time()
                        timeout_s = task.timeout
                        if timeout_s is None:
                            timeout_s = default_timeout
                        if timeout_s is None:
                            ctx = task._ctx = TaskContext(task, attempt, None)
                        else:
                            deadline = start + timeout_s
                            ctx = task._ctx = TaskContext(task, attempt, deadline)
                            worker_ctx[index] = ctx  # the deadline timer looks here (see _on_deadline)
                            if deadline < self._deadline_at:
                                self._arm_deadline_timer(deadline)
                        # task._cancel_reason is None here: every attempt clears it when it ends.
                        self._n_running += 1
                        tracer = self._tracer
                        span = None if tracer is None else _safe_start(tracer, task, ctx)
                        ctx._runner = me
                        try:
                            result = await task.execute(ctx)
                        except BaseException as exc:
                            outcome = self._attempt_raised(task, exc, me, span)  # re-raises a cancel not ours
                        else:
                            ctx._runner = None
                            if task._cancel_reason is not None and me.cancelling():
                                me.uncancel()  # our own cancel of this asyncio task, swallowed by the task
                            outcome = None
                            if span is not None:
                                _safe_end(span, None)
                        finally:
                            ctx._runner = None
                            ctx._active = False
                            task._ctx = None
                            task._cancel_reason = None
                            self._n_running -= 1
                    else:
                        outcome = await self._attempt(task, None, me)
                        if outcome[0] is _COMPLETED:
                            result = outcome[1]
                            outcome = None
                    if outcome is None and task._lease is None:  # completed in memory: no tuple, no await
                        pending = self._finish(task, _COMPLETED, result, None)
                        if pending is not None:
                            await pending
                    else:
                        await self._settle_outcome(task, outcome or (_COMPLETED, result, None))
                finally:
                    busy[index] = False
                    self._n_busy -= 1
                    if task._lease is not None and self._capacity_hook is not None:
                        self._capacity_hook()  # the durable loop may lease another task
                ran += 1
                if ran >= _YIELD_EVERY:
                    ran = 0
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Our own stop cancelled the rate limiter's wait: end quietly. A re-raised CancelledError
            # would keep its traceback, hence this frame and the whole manager, alive after the manager.
        finally:
            if self._workers.get(index) is me:
                del self._workers[index]

    def _thread_pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None or self._pool_size < self._max_workers:
            pool = self._pool = ThreadPoolExecutor(
                max_workers=max(1, self._max_workers), thread_name_prefix="worker-core-task"
            )
            self._pool_size = max(1, self._max_workers)
            self._pools.append(pool)
        return pool

    # ---------------------------------------------------------------------------------------- attempts

    async def _run(self, task: Task, timeout_s: float | None, me: asyncio.Task[Any]) -> Outcome:
        """Run one attempt of ``task`` in the current asyncio task and settle its outcome.

        When that asyncio task (``execute_task``'s caller) is cancelled during the attempt, the task ends
        ``CANCELLED`` (its one Result is published and ``wait()`` callers are released), and the
        cancellation propagates.
        """
        try:
            outcome = await self._attempt(task, timeout_s, me)
        except asyncio.CancelledError:
            if task._lease is None:
                self._finish_soon(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            else:
                await self._settle_outcome(task, self._interrupted(task, None))
            raise
        await self._settle_outcome(task, outcome)
        return outcome

    async def _settle_outcome(self, task: Task, outcome: Outcome) -> None:
        if task._lease is not None:
            await self._durable_outcome(task, outcome)
        else:
            await self._settle_attempt(task, outcome)

    async def _attempt(self, task: Task, timeout_s: float | None, me: asyncio.Task[Any]) -> Outcome:
        loop = asyncio.get_running_loop()
        task._status = _RUNNING
        task._attempt += 1
        start = task._started_mono = loop.time()
        if timeout_s is None:
            timeout_s = self._timeout_of(task)
        deadline = start + timeout_s if timeout_s is not None else None
        is_async = task._is_async
        ctx = task._ctx = TaskContext(task, task._attempt, deadline, None if is_async else threading.Event())
        task._cancel_reason = None
        self._n_running += 1
        try:
            if self._i_start:
                emit(self._i_start, task)
            hooks = self._hooks
            if hooks is not None and hooks.on_start is not None:
                await call_hook("on_start", hooks.on_start, task)
            if _reason(task) is not None:  # cancelled while the on_start hook ran
                return self._interrupted(task, None)
            if timeout_s is not None:
                self._watch_deadline(ctx, timeout_s)
            tracer = self._tracer
            if not is_async:
                return await self._run_in_thread(task, ctx, tracer)
            # The attempt runs in the current asyncio task (no extra task per attempt): a running task
            # is interrupted by cancelling this task, which is consumed right here. Under a tracer,
            # start, execute and end run in this task too, so the context variables the tracer sets are
            # visible to the task code, and its span's end restores them.
            span = None if tracer is None else _safe_start(tracer, task, ctx)
            ctx._runner = me
            try:
                result = await task.execute(ctx)
            except BaseException as exc:
                return self._attempt_raised(task, exc, me, span)  # re-raises a cancellation not ours
            ctx._runner = None
            if _reason(task) is not None and me.cancelling():
                me.uncancel()  # our own cancel of this asyncio task, swallowed by the task
            if span is not None:
                _safe_end(span, None)
            return _COMPLETED, result, None
        finally:
            ctx._runner = None
            ctx._active = False
            task._ctx = None  # the context dies with the attempt (fewer long-lived objects for the GC)
            task._cancel_reason = None
            self._n_running -= 1

    def _attempt_raised(self, task: Task, exc: BaseException, me: asyncio.Task[Any], span: Any = None) -> Outcome:
        """The outcome of an async attempt whose ``execute`` raised ``exc``; ends the attempt's ``span``, if any.

        A cancellation of ``me`` that is not ours (no interrupt reason on the task) propagates.
        """
        try:
            return self._classify_raised(task, exc, me)
        finally:
            if span is not None:
                _safe_end(span, exc)

    def _classify_raised(self, task: Task, exc: BaseException, me: asyncio.Task[Any]) -> Outcome:
        """``_attempt_raised`` without the span."""
        ctx = task._ctx
        if ctx is not None:
            ctx._runner = None
        reason = task._cancel_reason
        if reason is not None and me.cancelling():
            me.uncancel()  # our own cancel of this asyncio task: consumed here
        if isinstance(exc, asyncio.CancelledError):
            if reason is None:
                raise exc
            return self._interrupted(task, exc)
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit, GeneratorExit: not a task failure
        if reason is not None:
            return self._interrupted(task, exc)
        return _FAILED, None, exc

    def _timeout_of(self, task: Task) -> float | None:
        """The seconds an attempt of ``task`` may run: its own timeout, else the manager's."""
        return self._timeout_s if task.timeout is None else task.timeout

    def _interrupted(self, task: Task, exc: BaseException | None) -> Outcome:
        if task._cancel_reason is _DEADLINE:
            timeout = self._timeout_of(task)
            error: BaseException = (
                exc
                if isinstance(exc, Exception) and not task._is_async
                else TaskTimeoutError(f"task {task.id} exceeded its timeout of {timeout}s")
            )
            return _DEADLINE, None, error
        return _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled")

    async def _run_in_thread(self, task: Task, ctx: TaskContext, tracer: TaskTracer | None) -> Outcome:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        span = context.run(_safe_start, tracer, task, ctx) if tracer is not None else None
        error: BaseException | None = None
        thread_future = self._thread_pool().submit(context.run, task.execute, ctx)
        try:
            # A thread cannot be interrupted: on cancel or timeout the event is set, and the worker
            # waits for the function to return (as go-worker waits for Execute).
            result = await asyncio.wrap_future(thread_future, loop=loop)
        except asyncio.CancelledError as exc:
            ctx._cancel()
            if span is not None:
                # The awaiting task is cancelled (its caller, or the worker) while the function still
                # runs inside ``context``: the span ends with the cancellation once the function returns.
                thread_future.add_done_callback(partial(_end_later, loop, context, span, exc))
                span = None
            raise
        except Exception as exc:
            error = exc
            if _reason(task) is not None:
                return self._interrupted(task, exc)
            return _FAILED, None, exc
        except BaseException as exc:  # pragma: no cover - KeyboardInterrupt/SystemExit from the pool
            error = exc
            raise
        finally:
            if span is not None:  # every other path ends the span here
                context.run(_safe_end, span, error)
        return _COMPLETED, result, None

    # ------------------------------------------------------------------------------ outcome handling

    async def _settle_attempt(self, task: Task, outcome: Outcome) -> None:
        """In-memory path: finish the task, or schedule its retry."""
        status, result, error = outcome
        if status is _COMPLETED or status is _CANCELLED or isinstance(error, Abort):
            pending = self._finish(task, status, result, error)
        elif task._retries_left > 0 and not self._stopped:
            await self._schedule_retry(task, error)
            return
        else:
            pending = self._finish(task, status, result, error)
        if pending is not None:
            await pending

    async def _schedule_retry(self, task: Task, error: BaseException | None) -> None:
        attempt = max(1, task._attempt)  # the attempt that just failed (go-worker: Retries - remaining + 1)
        task._retries_left -= 1
        base = task._backoff
        task._backoff = next_backoff(base)
        delay = error.delay if isinstance(error, Retry) and error.delay is not None else None
        if delay is None:
            delay = retry_jitter(base, task.id, attempt)
        task._status = _RETRYING
        task._error = error
        self._n_retried += 1
        if self._i_retry:
            emit(self._i_retry, task, delay, attempt)
        task._entry = asyncio.get_running_loop().call_later(delay, self._requeue, task)  # the retry timer
        hooks = self._hooks
        if hooks is not None and hooks.on_retry is not None:
            await call_hook("on_retry", hooks.on_retry, task, delay, attempt)

    def _requeue(self, task: Task) -> None:
        """Backoff is over: the task competes for a worker again (it counts against ``max_tasks``)."""
        task._entry = None
        if task._status is not _RETRYING:
            return
        if self._ready.size + self._delayed.size >= self._max_tasks:
            error = QueueFullError(f"queue is full (max {self._max_tasks}); retry of task {task.id} dropped")
            self._finish_soon(task, _FAILED, None, error)
            return
        task._status = _QUEUED
        self._ready.push(task)
        self._wake_one()

    def _finish_soon(self, task: Task, status: TaskStatus, result: Any, error: BaseException | None) -> None:
        pending = self._finish(task, status, result, error)
        if pending is not None:
            self._spawn(pending)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        background = asyncio.get_running_loop().create_task(coro)
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    def _finish(
        self, task: Task, status: TaskStatus, result: Any, error: BaseException | None
    ) -> Coroutine[Any, Any, None] | None:
        """Make ``task`` terminal exactly once: counters, result, then (maybe async) hooks and settle.

        Returns a coroutine to await when an ``on_finish`` hook is set, else ``None`` (all done).
        """
        current = task._status
        # Identity tests, not a set lookup: Enum.__hash__ is Python code and this is the hot path.
        if current is not _RUNNING and current is not _QUEUED and current is not _RETRYING:
            return None
        task._status = status
        task._result = result
        task._error = error
        now = task._completed_mono = time.monotonic()
        if status is _COMPLETED:
            self._n_completed += 1
        elif status is _CANCELLED:
            self._n_cancelled += 1
        else:
            self._n_failed += 1
        latency: float | None = None
        if task._started_mono:
            latency = now - task._started_mono
            self._lat_count += 1
            self._lat_total += latency
            if latency > self._lat_max:
                self._lat_max = latency
        subscriptions = self._subscriptions
        if subscriptions:
            # Publish (the Result is built when a subscriber takes it: one object less per task).
            dropped = 0
            for subscription in subscriptions:
                items = subscription._items
                if len(items) >= subscription._buffer:
                    dropped += 1
                    if not self._drop_oldest:
                        continue
                    items.popleft()
                items.append(task)
                waiter = subscription._waiter
                if waiter is not None:
                    subscription._waiter = None
                    if not waiter.done():
                        waiter.set_result(None)
            if dropped:
                self._n_dropped += dropped
                if self._i_dropped:
                    emit(self._i_dropped, dropped)
        if self._i_finish:
            for callback in self._i_finish:  # emit(), inline: once per task when metrics are on
                try:
                    callback(task, status, latency)
                except Exception:
                    logger.exception("instrumentation callback %r raised; ignored", callback)
        hooks = self._hooks
        if hooks is not None and hooks.on_finish is not None:
            return self._finish_hook(hooks.on_finish, task, status, result, error)
        self._settle(task)
        return None

    async def _finish_hook(
        self, hook: Callable[..., Any], task: Task, status: TaskStatus, result: Any, error: BaseException | None
    ) -> None:
        try:
            await call_hook("on_finish", hook, task, status, result, error)
        finally:
            self._settle(task)

    def _settle(self, task: Task) -> None:
        """The task is fully done: release ``wait()`` callers and apply retention."""
        if self._retention is not None:
            self._terminal.append(task)
        if task._lease is not None:  # durable tasks are not counted by wait()
            return
        self._active -= 1
        if not self._active and self._wait_futures:
            futures, self._wait_futures = self._wait_futures, []
            for future in futures:
                if not future.done():
                    future.set_result(None)
        if self._retention is not None:
            self._prune(task._completed_mono)


def _check_task_fields(task: Task) -> None:
    """Raise the InvalidTaskError that says which field of ``task`` is wrong, if one is.

    Subclasses are fine here (an IntEnum priority, a StrEnum queue); bools are not ints.
    """
    priority: object = task.priority
    weight: object = task.weight
    queue: object = task.queue
    run_at: object = task.run_at
    if not _is_int(priority) or not _is_int(weight) or not isinstance(queue, str):
        raise InvalidTaskError("priority and weight must be int and queue a str")
    if not callable(task.execute):
        raise InvalidTaskError("execute must be callable")
    if run_at is not None and not isinstance(run_at, datetime):
        raise InvalidTaskError("run_at must be a datetime")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:  # type: ignore[operator]
        raise InvalidTaskError(f"priority must fit in a signed 64-bit int, got {priority}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _safe_start(tracer: TaskTracer, task: Task, ctx: TaskContext) -> Any:
    try:
        return tracer.start(task, ctx)
    except Exception:
        logger.warning("tracer start raised; attempt of task %s runs untraced", task.id, exc_info=True)
        return None


def _safe_end(span: Any, error: BaseException | None) -> None:
    try:
        span.end(error)
    except Exception:
        logger.warning("tracer span end raised; ignored", exc_info=True)


def _end_later(
    loop: asyncio.AbstractEventLoop, context: contextvars.Context, span: Any, error: BaseException, _: object
) -> None:
    """End the span of an abandoned threaded attempt, on the loop, once its function returned."""
    try:
        loop.call_soon_threadsafe(context.run, _safe_end, span, error)
    except RuntimeError:  # the loop is closed: end it here, in the thread that ran the function
        context.run(_safe_end, span, error)


def _reason(task: Task) -> TaskStatus | None:
    """Why the running attempt is being interrupted (read through a call: other code sets it meanwhile)."""
    return task._cancel_reason
