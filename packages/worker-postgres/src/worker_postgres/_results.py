"""Reads of the result store (``outcomes`` table): one outcome, waiting for one, the recent ones, cleanup.

Outcomes are written by the settling statements themselves (``ack_with_outcome`` / ``fail_with_outcome``,
in ``_sql``); a trigger NOTIFYs ``<schema>_done`` with the task id when one is stored, at commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence

from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import PayloadError

from ._listen import Listener
from ._pool import Pool
from ._sql import Statements

__all__ = ("Results",)

logger = logging.getLogger(__name__)

_NOTIFIED_RECHECK_S = 30.0  # a waiter woken by NOTIFY still re-reads this often (a lost notification)


class Results:
    """The outcome reads of one schema, over the backend's pool and LISTEN connection."""

    def __init__(
        self, pool: Pool, statements: Statements, listener: Listener, *, listen: bool, poll: float, limit: int
    ) -> None:
        self._pool = pool
        self._sql = statements
        self._listener = listener
        self._listen = listen
        self._poll = poll
        self._limit = limit

    async def get(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The unexpired outcome of ``task_id``, or ``None``; PayloadError when it does not decode."""
        await self._pool.check()
        return await self._get(task_id)

    async def _get(self, task_id: uuid.UUID) -> TaskOutcome | None:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(self._sql.get_outcome, {"id": task_id})).fetchone()
        return None if row is None else TaskOutcome.decode(bytes(row[0]))

    async def wait(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome once stored (at once if it is); ``None`` after ``max_wait`` seconds (``None``: no limit)."""
        await self._pool.check()
        deadline = None if max_wait is None else time.monotonic() + max(0.0, max_wait)
        key = str(task_id)
        listening = self._listen and await self._listener.ready(min(self._poll * 10, 5.0))
        while True:
            event = self._listener.outcome_event(key) if listening else None
            try:
                outcome = await self._get(task_id)
                if outcome is not None:
                    return outcome
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                step = _NOTIFIED_RECHECK_S if event is not None and self._listener.listening else self._poll
                step = step if left is None else min(step, left)
                if event is None:
                    await asyncio.sleep(step)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(step):
                            await event.wait()
            finally:
                if event is not None:
                    self._listener.forget(key, event)
            listening = self._listen and self._listener.listening

    async def recent(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` (at most the backend's bound) unexpired outcomes of ``queue``, newest first."""
        if limit <= 0:
            return []
        await self._pool.check()
        params = {"queue": queue, "limit": min(int(limit), self._limit)}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(self._sql.recent, params)).fetchall()
        out: list[TaskOutcome] = []
        for task_id, data in rows:
            try:
                out.append(TaskOutcome.decode(bytes(data)))
            except PayloadError as exc:
                logger.warning("outcome of durable task %s left out of the recent list: %s", task_id, exc)
        return out

    async def store(self, outcomes: Sequence[TaskOutcome], ttl: float) -> None:
        """Store ``outcomes`` for ``ttl`` seconds in one statement (replacing any stored for the same ids)."""
        params = {
            "ids": [o.id for o in outcomes],
            "queues": [o.queue for o in outcomes],
            "data": [o.encode() for o in outcomes],
            "ttl": ttl,
        }
        async with self._pool.connection() as conn:
            await conn.execute(self._sql.store_many, params)

    async def cleanup(self, limit: int) -> int:
        """Delete up to ``limit`` expired outcomes; how many."""
        await self._pool.check()
        async with self._pool.connection() as conn:
            row = await (await conn.execute(self._sql.cleanup, {"cleanup": max(1, int(limit))})).fetchone()
        return int(row[0]) if row is not None else 0
