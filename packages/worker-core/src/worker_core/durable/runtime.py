"""The durable runtime: lease tasks from a backend and hand them to the manager's own workers.

It talks to the engine only through :class:`WorkSink`: how many tasks could start now, a way to be told when
that changes, and submit / withdraw / finish / forget for the tasks it leased. A leased task becomes a
:class:`LeasedTask` pushed into the same ready queues as in-memory tasks, so queue weights, priorities, the
rate limiter, timeouts, the tracer, hooks and the results stream all apply. The lease loop leases only as many
tasks as could start now (free workers minus leased tasks still waiting, and rate-limiter tokens), so a lease is
rarely held by a task that cannot start.

Neither a backend error nor a ``CancelledError`` that a backend call raises on its own ends the loop: both are
logged and retried with capped exponential backoff. The loop runs under the manager's supervisor, which
restarts it should it die anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Final

from worker_core import task as records
from worker_core.errors import InvalidTaskError, LeaseLostError, PayloadError, TaskCancelledError
from worker_core.status import TaskStatus

from .leased import LeasedTask, WorkSink, bind_handler
from .policy import DurablePolicy
from .types import (
    BatchExtendBackend,
    DurableBackend,
    DurableTaskLease,
    FailureReason,
    NodeRegistryBackend,
    WakeableBackend,
)

if TYPE_CHECKING:
    from .config import DurableConfig

__all__ = ("UNKNOWN_HANDLER_DELIVERIES", "DurableRuntime", "LeasedTask", "WorkSink")

logger = logging.getLogger("worker_core.durable")

_CANCELLED: Final = TaskStatus.CANCELLED
_BACKOFF_MAX_S = 5.0  # cap on the wait between retries of a failing backend call
#: Deliveries of a task whose handler the node does not know, before it is dead-lettered (each earlier one is
#: put back with a delay of 10 s, then 30 s, so that a node that knows it can take it during a rolling deploy).
UNKNOWN_HANDLER_DELIVERIES = 3
UNKNOWN_HANDLER_DELAY_S = 10.0
UNKNOWN_HANDLER_DELAY_MAX_S = 60.0


class DurableRuntime:
    """Owns one manager's leases: the lease loop, renewal, settling and handing leases back at stop."""

    def __init__(self, sink: WorkSink, backend: DurableBackend, config: DurableConfig, *, default_queue: str) -> None:
        options = config.options
        self._sink = sink
        self.backend = backend
        self._config = config
        self._default_queue = default_queue
        self._lease_s = options.lease_s
        self._poll_s = options.poll_s
        self._batch = options.batch_size
        self.renewal_s = options.renewal_s
        self._held: dict[int, LeasedTask] = {}  # leases this node holds, by task key
        self._leasing = False
        self._in_dequeue = False
        self._unqueued: list[LeasedTask] = []  # leased as the manager began to stop: never queued
        self._capacity: asyncio.Future[None] | None = None
        self._idle_waiter: asyncio.Future[None] | None = None
        self.policy = DurablePolicy(
            backend, sink, self._unhold, result_ttl_s=options.result_ttl_s, result_max_bytes=options.result_max_bytes
        )
        sink.on_capacity(self._capacity_changed)

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Lease from now on (the caller supervises :meth:`lease_loop` and :meth:`renew_loop`)."""
        self._leasing = True
        backend = self.backend
        if isinstance(backend, NodeRegistryBackend):
            info = {"host": socket.gethostname(), "pid": os.getpid(), "started": round(time.time(), 3)}
            backend.register_node(info, self.held)

    @property
    def in_dequeue(self) -> bool:
        """A dequeue call is in flight (a stop lets it finish rather than cut it: leases may be on their way)."""
        return self._in_dequeue

    def stop_leasing(self) -> None:
        """Lease nothing more (the first step of both stops)."""
        self._leasing = False
        self._capacity_changed()

    def take_unstarted(self) -> list[LeasedTask]:
        """Take leased tasks still waiting for a worker out of the ready queues (their leases stay held).

        Tasks leased by a dequeue that was in flight when the stop began were never queued: they are taken too.
        """
        unqueued, self._unqueued = self._unqueued, []
        return unqueued + [task for task in list(self._held.values()) if self._sink.withdraw(task)]

    async def release(self, tasks: list[LeasedTask]) -> None:
        """Hand the leases of ``tasks`` back (they have not started): another node runs them."""
        await self.policy.release([task.lease for task in tasks])
        for task in tasks:
            self._sink.forget(task)
            self._unhold(task)

    async def release_held(self) -> None:
        """Hand back every lease not settled (the workers are done), then leave the backend's node list."""
        await self.release(list(self._held.values()))
        backend = self.backend
        if isinstance(backend, NodeRegistryBackend):
            try:
                await backend.unregister_node()
            except Exception as exc:  # its heartbeat expires by itself
                logger.warning("durable node could not leave the node list (%s)", type(exc).__name__)

    def held(self) -> int:
        """Leases this node holds now."""
        return len(self._held)

    async def until_idle(self) -> None:
        """Return once this node holds no lease (every leased task settled or handed back)."""
        while self._held:
            waiter = self._idle_waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _unhold(self, task: LeasedTask) -> None:
        key = records.key(task)
        if self._held.get(key) is task:  # a redelivered copy may hold the key by now
            del self._held[key]
        waiter = self._idle_waiter
        if waiter is not None and not self._held:
            self._idle_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _capacity_changed(self) -> None:
        future = self._capacity
        if future is not None:
            self._capacity = None
            if not future.done():
                future.set_result(None)

    # ---------------------------------------------------------------------------------------- leasing

    def _free(self) -> tuple[int, float]:
        """How many tasks to lease now, and, when none only for want of a token, how long until one."""
        sink = self._sink
        free = sink.free_slots()
        if free <= 0:
            return 0, 0.0
        tokens = sink.tokens()
        if tokens < 1.0:
            return 0, sink.token_wait()  # lease when it can start, not before
        if tokens != math.inf:
            free = min(free, math.floor(tokens))
        if self._batch is not None:
            free = min(free, self._batch)
        return free, 0.0

    async def lease_loop(self) -> None:
        """Lease and submit tasks while the manager runs (supervised: restarted should it die)."""
        failures = 0
        backend = self.backend
        loop = asyncio.get_running_loop()
        while self._leasing:
            limit, token_wait = self._free()
            if limit <= 0:
                if token_wait > 0:
                    await asyncio.sleep(token_wait)
                else:
                    self._capacity = loop.create_future()
                    await self._capacity
                continue
            self._in_dequeue = True
            try:
                leases = await backend.dequeue(limit, self._lease_s)
            except (Exception, asyncio.CancelledError) as exc:
                me = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and me is not None and me.cancelling():
                    raise  # a real cancellation (a stop)
                failures += 1
                delay = min(_BACKOFF_MAX_S, self._poll_s * 2 ** min(failures, 10))
                logger.warning(
                    "durable dequeue failed (%s); retrying in %.2fs", type(exc).__name__, delay, exc_info=exc
                )
                await asyncio.sleep(delay)
                continue
            finally:
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
            except (Exception, asyncio.CancelledError) as exc:
                me = asyncio.current_task()
                if isinstance(exc, asyncio.CancelledError) and me is not None and me.cancelling():
                    raise
                logger.warning("durable wait_for_work failed (%s); polling instead", type(exc).__name__)
        await asyncio.sleep(self._poll_s)

    async def _admit(self, lease: DurableTaskLease) -> None:
        """Turn a lease into a ready task, or dead-letter it at once when it cannot run here."""
        record = lease.task
        spec = self._config.spec(record.handler)
        if spec is None:
            await self._unknown_handler(lease)
            return
        try:
            payload = self._config.decode(record.handler, record.payload or b"")
        except PayloadError as exc:
            logger.error("durable task %s dead-lettered: undecodable payload", lease.lease_id, exc_info=exc)
            await self.policy.call(lease, "fail", FailureReason(f"undecodable payload: {exc}", "PayloadError"))
            return
        queue: object = record.queue
        weight: object = record.weight
        try:
            task = LeasedTask(
                bind_handler(spec.fn, payload),
                lease,
                id=record.id if isinstance(record.id, uuid.UUID) else None,
                name=record.handler,
                priority=record.priority,
                queue=(queue.strip() if isinstance(queue, str) else queue) or self._default_queue,
                weight=weight if isinstance(weight, int) and weight > 0 else 1,
                metadata=record.metadata,
            )
        except InvalidTaskError as exc:
            await self.policy.call(lease, "fail", f"invalid task record: {exc}")
            return
        if record.id is None:
            record.id = task.id
        records.count_from(task, max(0, lease.attempts - 1))  # ctx.attempt counts deliveries, across nodes
        key = records.key(task)
        older = self._held.get(key)
        if older is not None and older.lost is None:
            # Delivered again to this very node: the older lease expired, so its attempt must not go on.
            self.lost(older, "lease expired: the task was delivered again")
        self._held[key] = task
        backoff = record.retry_delay if isinstance(record.retry_delay, int | float) and record.retry_delay > 0 else None
        if not self._sink.submit(task, max(0, lease.max_retries), backoff):
            self._unqueued.append(task)  # the manager stops: a graceful drain hands its lease back at once

    async def _unknown_handler(self, lease: DurableTaskLease) -> None:
        """A handler this node does not know (a rolling deploy: newer nodes may): put it back with a delay.

        Once the task was delivered :data:`UNKNOWN_HANDLER_DELIVERIES` times it is dead-lettered instead.
        """
        handler = lease.task.handler
        if lease.attempts < UNKNOWN_HANDLER_DELIVERIES:
            delay = min(UNKNOWN_HANDLER_DELAY_MAX_S, UNKNOWN_HANDLER_DELAY_S * 3 ** (lease.attempts - 1))
            logger.warning(
                'durable task %s: handler "%s" is not registered on this node; put back for %.0fs '
                "(delivery %d of %d before it is dead-lettered)",
                lease.lease_id,
                handler,
                delay,
                lease.attempts,
                UNKNOWN_HANDLER_DELIVERIES,
            )
            await self.policy.call(lease, "nack", delay)
            return
        reason = f'handler "{handler}": durable handler not registered (delivered {lease.attempts} times)'
        logger.error("durable task %s dead-lettered: %s", lease.lease_id, reason)
        await self.policy.call(lease, "fail", reason)

    async def cancel_waiting(self, task: LeasedTask) -> None:
        """``cancel_task`` of a leased task still waiting for a worker: dead-letter it as cancelled."""
        self._sink.withdraw(task)
        self._unhold(task)
        await self.policy.call(task.lease, "fail", "task cancelled")
        pending = self._sink.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
        if pending is not None:
            await pending

    # ------------------------------------------------------------------------------------- renewal

    async def renew_loop(self) -> None:
        """Extend every held lease each renewal interval, all in one backend call (supervised).

        A lease the backend reports lost, or one whose expiry passed while renewals failed, cancels its attempt
        at once (:meth:`lost`): the task may already run elsewhere, so this node must stop and not settle it.
        """
        assert self.renewal_s is not None
        while True:
            await asyncio.sleep(self.renewal_s)
            await self.renew_once()

    async def renew_once(self) -> None:
        """One renewal round: every held lease, in one call when the backend has ``extend_many``."""
        tasks = [task for task in self._held.values() if task.lost is None]
        backend = self.backend
        if not tasks and not isinstance(backend, NodeRegistryBackend):
            return  # (a node registry heartbeats in the renewal call, even with no lease to renew)
        leases = [task.lease for task in tasks]
        try:
            if isinstance(backend, BatchExtendBackend):
                held = await backend.extend_many(leases, self._lease_s)
            else:
                held = list(await asyncio.gather(*(self._extend_one(lease) for lease in leases)))
        except Exception as exc:
            logger.warning(
                "durable lease renewal of %d tasks failed (%s); retrying next round",
                len(leases),
                type(exc).__name__,
                exc_info=exc,
            )
            now = time.time()
            for task in tasks:
                expires = task.lease.expires_at
                if expires and expires <= now and self._holds(task):
                    self.lost(task, "lease expired: renewal failed until the lease ran out")
            return
        for task, ok in zip(tasks, held, strict=True):
            if not ok and self._holds(task):
                self.lost(task, "lease lost: the backend no longer holds it for this node")

    def _holds(self, task: LeasedTask) -> bool:
        """Whether ``task``'s lease is still this node's to lose (not settled, not being settled meanwhile)."""
        key = records.key(task)
        return self._held.get(key) is task and key not in self.policy.settling

    async def _extend_one(self, lease: DurableTaskLease) -> bool:
        try:
            await self.backend.extend(lease, self._lease_s)
        except LeaseLostError:
            return False
        return True

    def lost(self, task: LeasedTask, why: str) -> None:
        """This node lost ``task``'s lease: cancel its attempt (or drop it unstarted), never settle it here."""
        if task.lost is not None:
            return
        task.lost = why
        logger.warning(
            "durable task %s (%s, delivery %d): %s; its attempt is cancelled and it may run elsewhere",
            task.lease.lease_id,
            task.name,
            task.lease.attempts,
            why,
        )
        if self._sink.withdraw(task):  # still waiting for a worker: nothing runs
            self._sink.forget(task)
            self._unhold(task)
            return
        self._sink.lose(task, why)
