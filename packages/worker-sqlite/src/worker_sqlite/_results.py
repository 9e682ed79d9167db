"""The result store's reads and waits (``ResultStoreBackend``), on the backend's connections."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, final

from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import WorkerError

from . import _ops as ops
from ._conn import Op
from ._wake import Waiters

__all__ = ("Results",)

logger = logging.getLogger("worker_sqlite")
Run = Callable[[Op], Awaitable[Any]]


@final
class Results:
    """Outcomes kept in the ``outcomes`` table: stored with the settle, read, awaited, listed per queue."""

    def __init__(self, write: Run, read: Run, waiters: Callable[[], Waiters]) -> None:
        self._write = write
        self._read = read
        self._waiters = waiters  # the backend's current waiters (replaced when it closes)

    async def settle_with(self, outcome: TaskOutcome, ttl: float, settle: Op) -> None:
        """Run ``settle`` and keep ``outcome`` for ``ttl`` seconds in the same transaction; wake its waiters."""
        data = outcome.encode()
        task_id = str(outcome.id)

        def op(db: Any) -> ops.Wake:
            settle(db)
            now = time.time()
            ops.store_outcome(db, task_id, outcome.queue, data, now + ttl, now)
            return ops.Wake(outcomes=(task_id,))

        await self._write(op)

    async def get(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The kept outcome of ``task_id``, or ``None``. Raises PayloadError for a stored one that does not decode."""
        key = str(task_id)
        sql = "SELECT data FROM outcomes WHERE id = ? AND expires_at > ?"
        row = await self._read(lambda db: db.execute(sql, (key, time.time())).fetchone())
        return None if row is None else TaskOutcome.decode(bytes(row[0]))

    async def wait(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` once kept; ``None`` after ``max_wait`` seconds."""
        key = str(task_id)
        try:
            async with asyncio.timeout(max_wait):
                while True:
                    waiters = self._waiters()
                    waiter = waiters.outcome_waiter(key)
                    try:
                        await waiters.arm()
                        outcome = await self.get(task_id)
                        if outcome is not None:
                            return outcome
                        await waiter
                    finally:
                        waiters.discard(waiter, key)
        except TimeoutError:
            return None

    async def recent(self, queue: str, count: int) -> list[TaskOutcome]:
        """Up to ``count`` unexpired outcomes of ``queue``, newest first; one that does not decode is skipped."""
        if count <= 0:
            return []
        sql = "SELECT id, data FROM outcomes WHERE queue = ? AND expires_at > ? ORDER BY seq DESC LIMIT ?"
        rows = await self._read(lambda db: db.execute(sql, (queue, time.time(), count)).fetchall())
        out: list[TaskOutcome] = []
        for task_id, data in rows:
            try:
                out.append(TaskOutcome.decode(bytes(data)))
            except (WorkerError, TypeError) as exc:
                logger.warning("outcome of durable task %r left out of the recent list: %s", task_id, exc)
        return out

    async def existing(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` have an outcome stored (one query per 500 ids)."""
        result: set[str] = await self._read(lambda db: ops.stored_ids(db, "outcomes", ids))
        return result
