"""The outcome store of :class:`~worker_core.testing.InMemoryDurableBackend`: outcomes kept by TTL and count."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from typing import final

from worker_core.durable.outcomes import DEFAULT_RESULT_TTL, TaskOutcome, dead_letter_outcome
from worker_core.durable.types import DurableTask
from worker_core.errors import ConfigurationError

from .clock import Clock

__all__ = ("MemoryOutcomeStore",)


@final
class MemoryOutcomeStore:
    """Outcomes kept by TTL and by count (the oldest go first past ``max_outcomes``), and their waiters."""

    __slots__ = ("_clock", "_kept", "_max", "_recent", "_recent_limit", "_waiters", "dead_letter_ttl")

    def __init__(self, clock: Clock, max_outcomes: int, recent_limit: int) -> None:
        if max_outcomes < 1 or recent_limit < 1:
            raise ConfigurationError("max_outcomes and recent_limit must be >= 1")
        self._clock = clock
        self._max = max_outcomes
        self._recent_limit = recent_limit
        self._kept: OrderedDict[uuid.UUID, tuple[TaskOutcome, float]] = OrderedDict()  # oldest first
        self._recent: dict[str, deque[uuid.UUID]] = {}
        self._waiters: dict[uuid.UUID, list[asyncio.Future[TaskOutcome]]] = {}
        #: Seconds the outcome of a task dead-lettered by the delivery limit is kept (``None``: not kept).
        self.dead_letter_ttl: float | None = DEFAULT_RESULT_TTL

    def keep_dead_letter(self, task: DurableTask, reason: str, attempts: int) -> None:
        """Keep the outcome of ``task``, dead-lettered by the backend itself, for :attr:`dead_letter_ttl`."""
        if self.dead_letter_ttl is None:
            return
        assert task.id is not None
        outcome = dead_letter_outcome(
            task.id, reason, handler=task.handler, queue=task.queue, attempts=attempts, metadata=task.metadata
        )
        self.keep(outcome, self.dead_letter_ttl)

    def keep(self, outcome: TaskOutcome, ttl: float) -> None:
        """Keep ``outcome`` for ``ttl`` seconds (expired ones and, past the bound, the oldest go); wake its waiters."""
        now = self._clock.time()
        kept = self._kept
        kept.pop(outcome.id, None)
        kept[outcome.id] = (outcome, now + ttl)
        while len(kept) > self._max or (kept and next(iter(kept.values()))[1] <= now):
            kept.popitem(last=False)
        recent = self._recent.get(outcome.queue)
        if recent is None:
            recent = self._recent[outcome.queue] = deque(maxlen=self._recent_limit)
        recent.appendleft(outcome.id)
        for waiter in self._waiters.pop(outcome.id, ()):
            if not waiter.done():
                waiter.set_result(outcome)

    def get(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The outcome kept for ``task_id`` and not expired, or ``None``."""
        entry = self._kept.get(task_id)
        if entry is None:
            return None
        if entry[1] <= self._clock.time():
            del self._kept[task_id]
            return None
        return entry[0]

    async def wait(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` once kept; ``None`` after ``max_wait`` seconds."""
        outcome = self.get(task_id)
        if outcome is not None:
            return outcome
        waiter: asyncio.Future[TaskOutcome] = asyncio.get_running_loop().create_future()
        waiting = self._waiters.setdefault(task_id, [])
        waiting.append(waiter)
        try:
            async with asyncio.timeout(max_wait):
                return await waiter
        except TimeoutError:
            return None
        finally:
            waiting = self._waiters.get(task_id, [])
            if waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[task_id]

    def recent(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` outcomes kept for ``queue``, newest first."""
        out: list[TaskOutcome] = []
        for task_id in self._recent.get(queue, ()):
            if len(out) >= limit:
                break
            outcome = self.get(task_id)
            if outcome is not None and outcome.queue == queue:
                out.append(outcome)
        return out
