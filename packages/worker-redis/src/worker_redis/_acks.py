"""Ack coalescing: concurrent ``ack()`` calls made while one is in flight share the next script call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from worker_core.durable.types import DurableTaskLease
from worker_core.errors import LeaseLostError

__all__ = ("AckBatcher", "PendingAck")

_CHUNK = 500  # leases per script call at most
_CHUNK_BYTES = 1 << 20  # outcome bytes per script call at most (one ack always goes, however large)


class PendingAck(NamedTuple):
    """One ack to send: the lease, and the outcome to store with it (``b""``: none) for ``ttl_ms``."""

    lease: DurableTaskLease
    outcome: bytes = b""
    ttl_ms: int = 0


class AckBatcher:
    """Queues acks and sends them through ``send(acks) -> [1 acked | 0 lost, ...]`` in batches.

    The first ack starts a flush task; acks that arrive while a call is in flight wait for the next call, so
    under load one round trip settles many tasks and an idle worker's single ack goes out at once. A batch
    holds at most 500 acks and about 1 MiB of outcomes, so one script call stays short.
    """

    def __init__(self, send: Callable[[Sequence[PendingAck]], Awaitable[Sequence[int]]]) -> None:
        self._send = send
        self._pending: list[tuple[PendingAck, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def ack(self, lease: DurableTaskLease, outcome: bytes = b"", ttl_ms: int = 0) -> None:
        """Ack ``lease`` with the next batch; raises what the batch raised, or LeaseLostError for this lease."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((PendingAck(lease, outcome, ttl_ms), future))
        if self._task is None:
            self._task = loop.create_task(self._flush(), name="worker-redis-acks")
        await future

    async def drain(self) -> None:
        """Wait until every queued ack was sent (errors stay with their callers)."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _next_batch(self) -> list[tuple[PendingAck, asyncio.Future[None]]]:
        pending = self._pending
        size = total = 0
        for item, _ in pending[:_CHUNK]:
            total += len(item.outcome)
            if size and total > _CHUNK_BYTES:
                break
            size += 1
        batch = pending[:size]
        del pending[:size]
        return batch

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._next_batch()
                try:
                    result = await self._send([item for item, _ in batch])
                except Exception as exc:  # handed to every waiting caller
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (item, future), ok in zip(batch, result, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(None)
                    else:
                        future.set_exception(LeaseLostError(f"lease of durable task {item.lease.lease_id} is lost"))
        finally:
            self._task = None
