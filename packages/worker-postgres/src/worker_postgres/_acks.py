"""Ack coalescing: concurrent ``ack()`` calls made while one is in flight share the next statement.

The first ack starts a flush task; acks that arrive while a statement is in flight wait for the next one, so
under load one round trip settles many tasks and an idle worker's single ack goes out at once. A batch holds at
most 500 acks and about 1 MiB of outcomes, and never the same task twice (a second ack of one lease waits for
the next batch, where it finds the lease gone).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from worker_core.durable.types import DurableTaskLease
from worker_core.errors import LeaseLostError

__all__ = ("AckBatcher", "PendingAck")

_CHUNK = 500
_CHUNK_BYTES = 1 << 20


class PendingAck(NamedTuple):
    """One ack to send: the task id, its lease, and the outcome to store with it (``None``: none) for ``ttl`` s."""

    id: uuid.UUID
    lease: DurableTaskLease
    outcome: bytes | None = None
    ttl: float = 0.0


class AckBatcher:
    """Queues acks and sends them through ``send(acks) -> {ids acked}`` in batches (owns one flush task)."""

    def __init__(self, send: Callable[[Sequence[PendingAck]], Awaitable[set[str]]]) -> None:
        self._send = send
        self._pending: list[tuple[PendingAck, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def ack(self, item: PendingAck) -> None:
        """Ack with the next batch; raises what the batch raised, or LeaseLostError for this lease."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._flush(), name="worker-postgres-acks")
        await future

    async def drain(self) -> None:
        """Wait until every queued ack was sent (errors stay with their callers)."""
        task = self._task
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _next_batch(self) -> list[tuple[PendingAck, asyncio.Future[None]]]:
        batch: list[tuple[PendingAck, asyncio.Future[None]]] = []
        later: list[tuple[PendingAck, asyncio.Future[None]]] = []
        seen: set[uuid.UUID] = set()
        size = 0
        for entry in self._pending:
            item = entry[0]
            size += len(item.outcome or b"")
            if item.id in seen or len(batch) >= _CHUNK or (batch and size > _CHUNK_BYTES):
                later.append(entry)
                continue
            seen.add(item.id)
            batch.append(entry)
        self._pending = later
        return batch

    async def _flush(self) -> None:
        while self._pending:
            batch = self._next_batch()
            try:
                acked = await self._send([item for item, _ in batch])
            except BaseException as exc:  # handed to every waiting caller (a cancelled flush too)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    for _, future in self._pending:
                        if not future.done():
                            future.cancel()
                    self._pending = []
                    raise
                continue
            for item, future in batch:
                if future.done():
                    continue
                if str(item.id) in acked:
                    future.set_result(None)
                else:
                    future.set_exception(LeaseLostError(f"lease of durable task {item.id} is lost"))
