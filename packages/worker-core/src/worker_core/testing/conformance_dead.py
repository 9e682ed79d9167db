"""Conformance, dead-letter retention: dead tasks older than the backend's ``dead_ttl`` go at the next dead-lettering.

The tests need to make a dead task old without waiting days, so they need :meth:`age_dead_letters`, which each
backend's test overrides to set the failure time back in its store (skipped otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from worker_core.durable.types import DEAD_PRUNE_LIMIT, DEFAULT_DEAD_TTL, DurableBackend

from .conformance_base import ConformanceBase

__all__ = ("DeadRetentionConformance",)


class DeadRetentionConformance(ConformanceBase):
    """Expired dead tasks are deleted by the next dead-lettering, oldest first and at most 100 per call.

    Overridable:
        dead_ttl: the ``dead_ttl`` of the fixture's backend (the 7-day default unless the fixture sets another).
        age_dead_letters: set the failure time of dead tasks back by some seconds, in the backend's store.
    """

    dead_ttl: ClassVar[float | None] = DEFAULT_DEAD_TTL

    async def age_dead_letters(self, backend: Any, task_ids: Sequence[str], seconds: float) -> None:
        """Make the dead tasks ``task_ids`` look as if they had failed ``seconds`` earlier (skips unless overridden)."""
        pytest.skip("override age_dead_letters() to age this backend's dead tasks")

    async def _dead_ones(self, backend: DurableBackend, n: int) -> list[str]:
        """Enqueue, lease and fail ``n`` tasks; their ids, oldest failure first."""
        ids: list[str] = []
        for _ in range(n):
            task = self.make_task(retries=0)
            await backend.enqueue(task)
            await backend.fail(await self.dequeue_one(backend), "boom")
            ids.append(str(task.id))
        return ids

    def _ttl(self) -> float:
        if self.dead_ttl is None:
            pytest.skip("the fixture's backend keeps dead tasks forever")
        return self.dead_ttl

    async def test_next_dead_letter_deletes_expired_dead_tasks_and_keeps_younger_ones(
        self, backend: DurableBackend
    ) -> None:
        """Dead tasks that failed longer ago than ``dead_ttl`` go when another task dies; younger ones stay."""
        ttl = self._ttl()
        old = await self._dead_ones(backend, 2)
        young = await self._dead_ones(backend, 1)
        await self.age_dead_letters(backend, old, ttl + 60)
        await self.age_dead_letters(backend, young, ttl - 60)
        assert set(old + young) <= set(await self.dead_letters(backend))  # nothing goes before a dead-lettering
        (latest,) = await self._dead_ones(backend, 1)
        dead = set(await self.dead_letters(backend))
        assert dead.isdisjoint(old), "dead tasks older than dead_ttl were kept"
        assert {*young, latest} <= dead, "dead tasks younger than dead_ttl were deleted"

    async def test_one_dead_letter_deletes_at_most_the_bound(self, backend: DurableBackend) -> None:
        """One dead-lettering deletes at most 100 expired dead tasks, the oldest first; the next one goes on."""
        ttl = self._ttl()
        extra = 3
        old = await self._dead_ones(backend, DEAD_PRUNE_LIMIT + extra)
        await self.age_dead_letters(backend, old, ttl + 60)
        await self._dead_ones(backend, 1)
        dead = set(await self.dead_letters(backend))
        assert dead & set(old) == set(old[DEAD_PRUNE_LIMIT:]), "not the 100 oldest expired dead tasks were deleted"
        await self._dead_ones(backend, 1)
        assert set(await self.dead_letters(backend)).isdisjoint(old)
