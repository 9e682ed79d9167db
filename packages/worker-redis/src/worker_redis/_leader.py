"""The optional leader lock: one backend of a deployment dequeues at a time (go-worker's option).

go-worker renews the lock only from Dequeue calls, so a poll interval longer than the lock's lease
loses leadership. Here a background task renews it every third of its lease, independently of dequeue;
a backend that could not renew in time stops dequeuing until it holds the lock again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from worker_core.errors import WorkerError

__all__ = ("LeaderLock",)

logger = logging.getLogger(__name__)


class LeaderLock:
    """Takes and renews the lock through ``run(ttl_ms)`` (leader.lua: 1 held, 0 not); ``run(0)`` gives it up."""

    def __init__(self, run: Callable[[int], Awaitable[int]], ttl: float) -> None:
        self._run = run
        self._ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._held_until = 0.0
        self._task: asyncio.Task[None] | None = None

    async def held(self) -> bool:
        """Whether this backend is the leader now; the first call takes the lock and starts the renewals."""
        if self._task is None:
            await self._renew()
            self._task = asyncio.get_running_loop().create_task(self._renew_forever(), name="worker-redis-leader")
        return time.monotonic() < self._held_until

    async def _renew(self) -> None:
        started = time.monotonic()
        try:
            ok = await self._run(self._ttl_ms)
        except WorkerError as exc:
            logger.warning("leader lock renewal failed: %s", exc)
            return
        self._held_until = started + self._ttl if ok else 0.0

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            await self._renew()

    async def close(self) -> None:
        """Stop renewing and give the lock up (when held), so another node takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._held_until > time.monotonic():
            self._held_until = 0.0
            with contextlib.suppress(WorkerError):
                await self._run(0)
