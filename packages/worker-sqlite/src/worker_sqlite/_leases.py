"""Leasing and settling: the dequeue, waiting for work, the fenced settles, the batched renewal.

The dequeue's weighted round robin carries its turn across calls; ``ack``, ``nack``, ``fail``, ``extend`` and
``release`` are fenced by the lease token; the renewal (``extend_many``) carries the node's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

from worker_core.durable.outcomes import DEFAULT_RESULT_TTL
from worker_core.durable.types import DurableTaskLease

from . import _ops as ops
from ._conn import Op
from ._nodes import Node
from ._ops import Wake
from ._url import seconds as positive_seconds
from ._wake import Waiters

__all__ = ("Leases",)

logger = logging.getLogger("worker_sqlite")
Run = Callable[[Op], Awaitable[Any]]


@final
class Leases:
    """The leases of one backend object: its round-robin turn, its delivery limit, its dead-letter retention.

    Args:
        write: runs an operation in the backend's write transaction.
        read: runs a query on the backend's read connection.
        waiters: the backend's current waiters.
        node: the backend's node registration (its heartbeat rides on dequeues and renewals).
        extra_deliveries: deliveries beyond ``retries + 1`` before a task is dead-lettered.
        dead_ttl: seconds a dead-lettered task is kept (``None``: forever).
    """

    def __init__(
        self,
        write: Run,
        read: Run,
        waiters: Callable[[], Waiters],
        node: Node,
        *,
        extra_deliveries: int,
        dead_ttl: float | None,
    ) -> None:
        self._write = write
        self._read = read
        self._waiters = waiters
        self._node = node
        self._extra = extra_deliveries
        self._dead_ttl = dead_ttl
        self._outcome_ttl: float | None = DEFAULT_RESULT_TTL
        self._rr = ops.DequeueState()

    @property
    def weights(self) -> dict[str, int]:
        """The queue weights (a copy)."""
        return dict(self._rr.weights)

    def set_weights(self, weights: Mapping[str, int]) -> None:
        """Share the dequeue among queues by ``weights`` (names already resolved; missing queues weigh 1)."""
        self._rr.weights = dict(weights)

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the FAILED outcome of a task the dequeue dead-letters for ``ttl`` seconds (``None``: none)."""
        self._outcome_ttl = float(ttl) if ttl is not None and ttl > 0 and math.isfinite(ttl) else None

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks for ``lease`` seconds in one transaction (ConfigurationError: bad lease)."""
        lease_s = positive_seconds(lease, "lease")
        limit = max(int(limit), 1)
        heartbeat = self._node.first_beat()
        if heartbeat is None:
            # A read first: when nothing is due (every idle worker of every process is woken by each commit),
            # answer without taking the write lock. A stale answer only sends the caller to wait_for_work,
            # which sees the due task and returns at once.
            now = time.time()
            next_time = await self._read(lambda db: ops.next_event_time(db, now))
            if next_time is None or next_time > now:
                return []
        rr = ops.DequeueState(self._rr.queue, self._rr.credit, self._rr.weights)
        extra, ttl, node, dead_ttl = self._extra, self._outcome_ttl, self._node.id, self._dead_ttl

        def op(db: Any) -> Wake:
            done = ops.dequeue(db, rr, time.time(), limit, lease_s, extra, heartbeat, ttl, node=node, dead_ttl=dead_ttl)
            return Wake(outcomes=done.outcomes, value=done)

        wake: Wake = await self._write(op)
        done: ops.Dequeued = wake.value
        self._rr.queue, self._rr.credit = rr.queue, rr.credit
        if heartbeat is not None:
            self._node.written()
        for task_id, reason in done.dead:
            logger.error("durable task %s dead-lettered by dequeue: %s", task_id, reason)
        return done.leases

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may be ready, or after ``max_wait`` seconds at the latest."""
        waiters = self._waiters()
        waiter = waiters.work_waiter()
        try:
            await waiters.arm()
            now = time.time()
            next_time = await self._read(lambda db: ops.next_event_time(db, now))
            timeout = max(float(max_wait), 0.0)
            if next_time is not None:
                if next_time <= now:
                    return
                timeout = min(timeout, next_time - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            waiters.discard(waiter)

    @staticmethod
    def ack_op(lease: DurableTaskLease) -> Op:
        """The operation that deletes the task of ``lease`` (LeaseLostError when the lease is not current)."""
        return lambda db: ops.ack(db, lease)

    def fail_op(self, lease: DurableTaskLease, error: str) -> Op:
        """The operation that dead-letters the task of ``lease`` with ``error`` and prunes expired dead tasks."""
        dead_ttl = self._dead_ttl
        return lambda db: ops.fail(db, lease, error, time.time(), dead_ttl)

    async def ack(self, lease: DurableTaskLease) -> None:
        """Delete the task (LeaseLostError when the lease is not current)."""
        await self._write(self.ack_op(lease))

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds; wakes idle workers."""

        def op(db: Any) -> Wake:
            now = time.time()
            ops.nack(db, lease, now + max(float(delay), 0.0), now)
            return Wake(work=True)

        await self._write(op)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error`` as its reason."""
        await self._write(self.fail_op(lease, error))

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds."""
        seconds = positive_seconds(duration, "lease duration")
        until = time.time() + seconds
        await self._write(lambda db: ops.extend(db, lease, until))
        lease.expires_at = until

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one transaction, the node's heartbeat with them; per lease whether it is held."""
        seconds = positive_seconds(duration, "lease duration")
        if not leases and not self._node.registered:
            return []
        heartbeat = self._node.renewal_beat(seconds)
        now = time.time()
        until = now + seconds
        held: list[bool] = await self._write(lambda db: ops.extend_many(db, leases, until, now, heartbeat))
        if heartbeat is not None:
            self._node.written()
        for lease, ok in zip(leases, held, strict=True):
            if ok:
                lease.expires_at = until
        return held

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make leased tasks ready now, the delivery not counted; lost ones are skipped."""
        if not leases:
            return
        batch = list(leases)

        def op(db: Any) -> Wake:
            return Wake(work=ops.release(db, batch, time.time()) > 0)

        await self._write(op)
