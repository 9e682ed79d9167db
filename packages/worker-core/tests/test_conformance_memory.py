"""The in-memory backend against the durable backend conformance suite, on a FakeClock (no real waiting)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from worker_core.testing import DurableBackendConformance, FakeClock, InMemoryDurableBackend, ScheduleBackendConformance


class TestInMemoryConformance(DurableBackendConformance, ScheduleBackendConformance):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def backend(self, clock: FakeClock) -> InMemoryDurableBackend:
        self._clock = clock
        return InMemoryDurableBackend(clock)

    async def advance(self, seconds: float) -> None:
        self._clock.advance(seconds)

    def now(self) -> float:
        return self._clock.time()

    async def age_dead_letters(self, backend: InMemoryDurableBackend, task_ids: Sequence[str], seconds: float) -> None:
        for task_id in task_ids:
            backend._store.records[task_id].failed_at -= seconds


class TestInMemoryConformanceRealTime(DurableBackendConformance):
    """The suite's default real-time path (what a networked backend uses), run once on the memory backend."""

    @pytest.fixture
    def backend(self) -> InMemoryDurableBackend:
        return InMemoryDurableBackend()
