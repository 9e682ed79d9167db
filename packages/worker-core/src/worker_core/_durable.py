"""The durable loop: lease tasks from a ``DurableBackend`` and run them on the manager's own workers.

A leased task becomes an in-memory :class:`~worker_core.Task` pushed into the same ready queues, so queue
weights, priorities, the rate limiter, timeouts, the tracer, hooks and the results stream all apply. The loop
leases only as many tasks as there are free workers (minus leased tasks still waiting), so a lease is rarely
held by a task that cannot start. The outcome of each attempt comes back through ``_on_outcome``:
success acks, a failure nacks with the durable backoff while attempts remain and dead-letters otherwise.

Backend errors never kill the loop: they are logged and retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._state import emit
from .backoff import durable_retry_delay
from .durable.types import DurableBackend, DurableTaskLease, ReleasableBackend, WakeableBackend
from .errors import Abort, InvalidTaskError, LeaseLostError, PayloadError, Retry, TaskCancelledError
from .hooks import call_hook
from .status import TaskStatus
from .task import Task

if TYPE_CHECKING:
    from ._engine import Engine, Outcome

__all__ = ("DurableRunner",)

logger = logging.getLogger("worker_core.durable")

_COMPLETED = TaskStatus.COMPLETED
_CANCELLED = TaskStatus.CANCELLED
_DEADLINE = TaskStatus.DEADLINE_EXCEEDED
_FAILED = TaskStatus.FAILED
_RETRYING = TaskStatus.RETRYING
_BACKOFF_MAX_S = 5.0  # cap on the wait between retries of a failing backend call
_SETTLE_TRIES = 4  # ack/nack/fail attempts against an unavailable backend before giving up (lease expiry redelivers)


Decoder = Callable[[str, bytes], Any]


class DurableRunner:
    """Owns the durable loop of one manager; created by the manager when a backend is configured."""

    def __init__(
        self,
        engine: Engine,
        backend: DurableBackend,
        decode: Decoder,
        handler_fn: Callable[[str], Callable[..., Any] | None],
        *,
        lease_s: float,
        poll_interval_s: float,
        batch_size: int | None,
        renewal_s: float | None,
    ) -> None:
        self._engine = engine
        engine._durable_outcome = self._on_outcome  # what the engine calls after each durable attempt
        self.backend = backend
        self._decode = decode
        self._handler_fn = handler_fn
        self._lease_s = lease_s
        self._poll_s = poll_interval_s
        self._batch = batch_size
        self._renewal_s = renewal_s if renewal_s is None or renewal_s < lease_s else lease_s / 2
        self._held: dict[int, tuple[Task, DurableTaskLease]] = {}  # leases this node holds, by task key
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._capacity: asyncio.Future[None] | None = None
        self._leasing = False
        self._releasing = False
        self._in_dequeue = False

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._leasing = True
        self._loop_task = loop.create_task(self._lease_loop(), name="worker-core-durable-loop")
        if self._renewal_s is not None:
            self._renew_task = loop.create_task(self._renew_loop(), name="worker-core-durable-renewal")

    async def stop_leasing(self) -> None:
        """Lease nothing more (first step of both stops).

        A dequeue in flight is let finish (up to the lease length) rather than cancelled: cancelled halfway,
        a remote backend may have leased tasks that would then wait for their leases to expire.
        """
        self._leasing = False
        loop_task, self._loop_task = self._loop_task, None
        if loop_task is None:
            return
        if self._in_dequeue:
            done, _ = await asyncio.wait({loop_task}, timeout=self._lease_s)
            if done:
                return
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)

    async def running_done(self) -> None:
        """Wait until no leased task is running (graceful stop, after ``stop_leasing``)."""
        while any(t._status is TaskStatus.RUNNING for t, _ in self._held.values()):
            future = self._capacity = asyncio.get_running_loop().create_future()
            await future

    async def close(self) -> None:
        """Stop everything and hand back every lease not settled (after the workers exited)."""
        self._releasing = True
        await self.stop_leasing()
        renewal, self._renew_task = self._renew_task, None
        if renewal is not None:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        leftovers = list(self._held.values())
        self._held.clear()
        if leftovers:
            await self._release([lease for _, lease in leftovers])
            for held, _ in leftovers:
                self._engine._tasks.pop(held._key, None)

    def take_unstarted(self) -> list[Task]:
        """Remove leased tasks still waiting in the ready queues (their leases stay held for release)."""
        ready = self._engine._ready
        return [task for task, _ in list(self._held.values()) if ready.remove(task)]

    def notify_capacity(self) -> None:
        """A worker became free (called by the engine after each durable attempt)."""
        future = self._capacity
        if future is not None:
            self._capacity = None
            if not future.done():
                future.set_result(None)

    # ---------------------------------------------------------------------------------------- leasing

    def _free_slots(self) -> tuple[int, float]:
        """How many tasks could start now, and, when none can only for want of a token, how long until one."""
        engine = self._engine
        free = engine._max_workers - engine._n_busy - engine._ready.size
        if free <= 0:
            return 0, 0.0
        limiter = engine._limiter
        if limiter is not None:
            tokens = limiter.tokens(asyncio.get_running_loop().time())
            if tokens < 1.0:
                return 0, (1.0 - tokens) / limiter.rate  # lease when it can start, not before
            free = min(free, math.floor(tokens))
        if self._batch is not None:
            free = min(free, self._batch)
        return free, 0.0

    async def _lease_loop(self) -> None:
        failures = 0
        backend = self.backend
        while self._leasing:
            limit, token_wait = self._free_slots()
            if limit <= 0:
                if token_wait > 0:
                    await asyncio.sleep(token_wait)
                else:
                    future = self._capacity = asyncio.get_running_loop().create_future()
                    await future
                continue
            self._in_dequeue = True
            try:
                leases = await backend.dequeue(limit, self._lease_s)
            except Exception as exc:  # a backend error must never kill the loop
                self._in_dequeue = False
                failures += 1
                delay = min(_BACKOFF_MAX_S, self._poll_s * 2 ** min(failures, 10))
                logger.warning("durable dequeue failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                continue
            self._in_dequeue = False
            failures = 0
            if not leases:
                await self._idle()
                continue
            for lease in leases:
                try:
                    await self._admit(lease)
                except Exception:  # a bug must not stop the loop; the lease expires and redelivers
                    logger.exception("durable task %s could not be admitted", lease.lease_id)

    async def _idle(self) -> None:
        backend = self.backend
        if isinstance(backend, WakeableBackend):
            try:
                await backend.wait_for_work(self._poll_s)
                return
            except Exception as exc:
                logger.warning("durable wait_for_work failed (%s); polling instead", type(exc).__name__)
        await asyncio.sleep(self._poll_s)

    async def _admit(self, lease: DurableTaskLease) -> None:
        """Turn a lease into a ready task, or dead-letter it at once when it cannot run here."""
        record = lease.task
        fn = self._handler_fn(record.handler)
        if fn is None:
            await self._settle(lease, "fail", f'handler "{record.handler}": durable handler not registered')
            return
        try:
            payload = self._decode(record.handler, record.payload or b"")
        except PayloadError as exc:
            await self._settle(lease, "fail", f"undecodable payload: {exc}")
            return
        engine = self._engine
        try:
            task = self._build(lease, fn, payload)
        except InvalidTaskError as exc:
            await self._settle(lease, "fail", f"invalid task record: {exc}")
            return
        engine._tasks[task._key] = task
        self._held[task._key] = (task, lease)
        engine._ready.push(task)
        engine._wake_one()

    def _build(self, lease: DurableTaskLease, fn: Callable[..., Any], payload: Any) -> Task:
        record = lease.task
        task = Task(
            _bind(fn, payload),
            id=record.id if isinstance(record.id, uuid.UUID) else None,
            name=record.handler,
            priority=record.priority,
            queue=record.queue,
            weight=record.weight,
            retries=max(0, lease.max_retries),
            retry_delay=record.retry_delay if record.retry_delay and record.retry_delay > 0 else None,
            metadata=record.metadata,
        )
        if record.id is None:
            lease.task.id = task.id
        task._lease = lease  # marks the task durable: the engine hands its outcomes to _on_outcome
        self._engine._prepare(task)
        task._attempt = max(0, lease.attempts - 1)  # ctx.attempt counts deliveries, across nodes
        task._status = TaskStatus.QUEUED
        return task

    # ------------------------------------------------------------------------------------ outcomes

    async def _on_outcome(self, task: Task, outcome: Outcome) -> None:
        engine = self._engine
        lease = task._lease
        assert lease is not None
        status, result, error = outcome
        try:
            if status is _COMPLETED:
                await self._settle(lease, "ack")
                await _await(engine._finish(task, _COMPLETED, result, None))
            elif status is _CANCELLED and self._releasing:
                # The node is stopping: hand the task back instead of dead-lettering it.
                await self._release([lease])
                engine._tasks.pop(task._key, None)
            elif status is _CANCELLED:
                await self._settle(lease, "fail", "task cancelled")
                await _await(engine._finish(task, _CANCELLED, None, error))
            elif lease.attempts <= lease.max_retries and not isinstance(error, Abort):
                await self._retry(task, lease, error)
            else:
                await self._settle(lease, "fail", _reason(error))
                await _await(engine._finish(task, status, None, error))
        finally:
            held = self._held.get(task._key)
            if held is not None and held[0] is task:  # a redelivered copy may hold the key by now
                del self._held[task._key]

    async def _retry(self, task: Task, lease: DurableTaskLease, error: BaseException | None) -> None:
        engine = self._engine
        attempt = lease.attempts
        if isinstance(error, Retry) and error.delay is not None:
            delay = error.delay
        else:
            delay = durable_retry_delay(task._backoff, attempt, task.id)
        task._status = _RETRYING
        task._error = error
        engine._n_retried += 1
        if engine._i_retry:
            emit(engine._i_retry, task, delay, attempt)
        hooks = engine._hooks
        if hooks is not None and hooks.on_retry is not None:
            await call_hook("on_retry", hooks.on_retry, task, delay, attempt)
        await self._settle(lease, "nack", delay)
        # The next delivery may go to any node: this node forgets the task (no never-ending RETRYING entry).
        if engine._tasks.get(task._key) is task:
            del engine._tasks[task._key]

    async def cancel_waiting(self, task: Task) -> None:
        """``cancel_task`` of a leased task still waiting for a worker: dead-letter it as cancelled."""
        lease = task._lease
        assert lease is not None
        self._engine._ready.remove(task)
        self._held.pop(task._key, None)
        await self._settle(lease, "fail", "task cancelled")
        await _await(self._engine._finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled")))
        self.notify_capacity()

    async def _settle(self, lease: DurableTaskLease, op: str, arg: Any = None) -> None:
        """ack/nack/fail with retries on an unavailable backend; a lost lease is logged, never raised."""
        backend = self.backend
        for attempt in range(1, _SETTLE_TRIES + 1):
            try:
                if op == "ack":
                    await backend.ack(lease)
                elif op == "nack":
                    await backend.nack(lease, float(arg))
                else:
                    await backend.fail(lease, str(arg))
                return
            except LeaseLostError:
                logger.warning("durable %s of task %s: lease lost (another consumer has it)", op, lease.lease_id)
                return
            except Exception as exc:
                if attempt == _SETTLE_TRIES:
                    logger.error(
                        "durable %s of task %s failed %d times (%s); the lease will expire and redeliver",
                        op,
                        lease.lease_id,
                        attempt,
                        type(exc).__name__,
                    )
                    return
                delay = min(_BACKOFF_MAX_S, 0.05 * 2**attempt)
                logger.warning("durable %s of task %s failed (%s); retrying", op, lease.lease_id, type(exc).__name__)
                await asyncio.sleep(delay)

    async def _release(self, leases: list[DurableTaskLease]) -> None:
        backend = self.backend
        try:
            if isinstance(backend, ReleasableBackend):
                await backend.release(leases)
                return
        except Exception as exc:
            logger.warning("durable release of %d leases failed (%s); nacking them", len(leases), type(exc).__name__)
        for lease in leases:
            await self._settle(lease, "nack", 0.0)

    # ------------------------------------------------------------------------------------- renewal

    async def _renew_loop(self) -> None:
        assert self._renewal_s is not None
        while True:
            await asyncio.sleep(self._renewal_s)
            for key, (task, lease) in list(self._held.items()):
                try:
                    await self.backend.extend(lease, self._lease_s)
                except LeaseLostError:
                    logger.warning("durable lease of task %s lost; it may run elsewhere too", lease.lease_id)
                    self._held.pop(key, None)
                    del task
                except Exception as exc:
                    logger.warning("durable extend of task %s failed (%s)", lease.lease_id, type(exc).__name__)


def _bind(fn: Callable[..., Any], payload: Any) -> Callable[..., Any]:
    """``execute(ctx)`` for a handler ``fn(ctx, payload)``, async when ``fn`` is."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004

        async def run_async(ctx: Any) -> Any:
            return await fn(ctx, payload)

        return run_async

    def run_sync(ctx: Any) -> Any:
        return fn(ctx, payload)

    return run_sync


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "failed"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _await(pending: Awaitable[None] | None) -> None:
    if pending is not None:
        await pending
