"""A reusable pytest suite for the optional ``ScheduleBackend`` capability (``worker_core.schedules``).

A backend's tests subclass :class:`ScheduleBackendConformance` (alone, or beside ``DurableBackendConformance``)
and provide a ``backend`` fixture; :meth:`advance` lets time pass (a real sleep by default, a ``FakeClock`` move
for a backend with an injectable clock). Every test is skipped for a backend without the capability::

    class TestRedisSchedules(ScheduleBackendConformance):
        @pytest.fixture
        async def backend(self, redis_url):
            backend = RedisDurableBackend.from_url(redis_url)
            yield backend
            await backend.aclose()
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import pytest

from worker_core.durable.types import DurableBackend, DurableTask
from worker_core.schedules.types import ScheduleBackend, ScheduleEvent, ScheduleRecord, TickResult, tick_task_id

__all__ = ("ScheduleBackendConformance",)


def _task(tick_ms: int, schedule: str = "s", *, fresh_id: bool = False) -> DurableTask:
    task_id = uuid.uuid4() if fresh_id else tick_task_id(schedule, tick_ms)
    return DurableTask("conformance", None, b"tick", id=task_id, queue="default", retries=0, retry_delay=0.0)


class ScheduleBackendConformance:
    """Contract tests of ``ScheduleBackend``; subclass and add a ``backend`` fixture.

    Overridable:
        marker_ttl: Seconds of the marker-expiry test (short: it waits for it).
        advance: Let time pass (real sleep by default).
    """

    marker_ttl: ClassVar[float] = 0.5

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the backend's clock (a real sleep unless overridden)."""
        await asyncio.sleep(seconds)

    @staticmethod
    def schedules(backend: Any) -> ScheduleBackend:
        """``backend`` as a ``ScheduleBackend``, or skip the test."""
        if not isinstance(backend, ScheduleBackend):
            pytest.skip("the backend does not implement ScheduleBackend")
        return backend

    async def test_a_tick_is_enqueued_once_whatever_the_task_id(self, backend: DurableBackend) -> None:
        """One task per (schedule, tick), whatever id another node's task has; other schedules are separate."""
        store = self.schedules(backend)
        assert await store.enqueue_tick(_task(1_000), "s", 1_000, 60.0, node="a") is TickResult.ENQUEUED
        assert await store.enqueue_tick(_task(1_000, fresh_id=True), "s", 1_000, 60.0) is TickResult.DUPLICATE
        assert await store.enqueue_tick(_task(1_000), "s", 1_000, 60.0) is TickResult.DUPLICATE
        assert await store.enqueue_tick(_task(1_000, "other"), "other", 1_000, 60.0) is TickResult.ENQUEUED
        leases = await backend.dequeue(10, 30.0)
        assert sorted(str(lease.task.id) for lease in leases) == sorted(
            [str(tick_task_id("s", 1_000)), str(tick_task_id("other", 1_000))]
        )

    async def test_the_marker_outlives_the_task(self, backend: DurableBackend) -> None:
        """A tick whose task was run and acked is still refused: the marker, not the task, remembers it."""
        store = self.schedules(backend)
        assert await store.enqueue_tick(_task(2_000), "s", 2_000, 60.0) is TickResult.ENQUEUED
        (lease,) = await backend.dequeue(1, 30.0)
        await backend.ack(lease)  # the task is gone; a node firing the tick late must still be refused
        assert await store.enqueue_tick(_task(2_000), "s", 2_000, 60.0) is TickResult.DUPLICATE

    async def test_an_expired_marker_lets_the_tick_through_again(self, backend: DurableBackend) -> None:
        """Markers expire after their TTL (bounded keys), and the tick can then be stored again."""
        store = self.schedules(backend)
        assert await store.enqueue_tick(_task(3_000, fresh_id=True), "s", 3_000, self.marker_ttl) is TickResult.ENQUEUED
        await self.advance(self.marker_ttl * 2 + 0.1)
        assert await store.enqueue_tick(_task(3_000, fresh_id=True), "s", 3_000, 60.0) is TickResult.ENQUEUED

    async def test_pause_is_honoured_by_the_tick_and_reported(self, backend: DurableBackend) -> None:
        """A paused schedule's tick stores nothing and says PAUSED; the flag is shared state."""
        store = self.schedules(backend)
        await store.set_schedule_paused("s", True)
        assert await store.enqueue_tick(_task(4_000), "s", 4_000, 60.0) is TickResult.PAUSED
        assert await backend.dequeue(10, 30.0) == []
        states = await store.schedule_states(["s", "t"])
        assert states["s"].paused
        assert not states["t"].paused
        await store.set_schedule_paused("s", False)
        assert await store.enqueue_tick(_task(4_000), "s", 4_000, 60.0) is TickResult.ENQUEUED

    async def test_last_tick_only_rises_and_events_are_newest_first(self, backend: DurableBackend) -> None:
        """The last tick is the highest one stored; events come newest first, trimmed to the limit."""
        store = self.schedules(backend)
        await store.enqueue_tick(_task(6_000), "s", 6_000, 60.0, node="a")
        await store.enqueue_tick(_task(5_000), "s", 5_000, 60.0, node="b")
        await store.record_schedule_event(ScheduleEvent("s", "failed", 7, 7_000, node="c", error="boom"), 10)
        state = (await store.schedule_states(["s"]))["s"]
        assert state.last_tick_ms == 6_000
        assert state.last_event is not None
        assert state.last_event.kind == "failed"
        events = await store.schedule_events("s", 10)
        assert [(e.kind, e.tick_ms, e.node) for e in events] == [
            ("failed", 7_000, "c"),
            ("enqueued", 5_000, "b"),
            ("enqueued", 6_000, "a"),
        ]
        assert len(await store.schedule_events("s", 2)) == 2
        for i in range(5):
            await store.record_schedule_event(ScheduleEvent("s", "skipped", i), 3)
        assert len(await store.schedule_events("s", 100)) == 3  # trimmed to the limit

    async def test_a_run_request_is_taken_by_one_caller(self, backend: DurableBackend) -> None:
        """A run request is left for the callers that run the schedule, and exactly one of them takes it."""
        store = self.schedules(backend)
        assert await store.take_schedule_runs(["s"]) == []
        await store.request_schedule_run("s")
        assert await store.take_schedule_runs(["other"]) == []  # not this caller's schedule: left pending
        taken = await asyncio.gather(*(store.take_schedule_runs(["s", "other"]) for _ in range(4)))
        assert sorted(map(len, taken)) == [0, 0, 0, 1]
        assert await store.take_schedule_runs(["s"]) == []

    async def test_published_records_are_listed_by_name(self, backend: DurableBackend) -> None:
        """Published records are listed by name, the latest publication of a name winning."""
        store = self.schedules(backend)
        first = ScheduleRecord("b", "@hourly", "UTC", "default")
        await store.publish_schedules([first, ScheduleRecord("a", "* * * * *", "Europe/Berlin", "q", "once")])
        await store.publish_schedules([ScheduleRecord("b", "@daily", "UTC", "default")])  # the latest wins
        assert [(r.name, r.spec, r.missed) for r in await store.list_schedules()] == [
            ("a", "* * * * *", "once"),
            ("b", "@daily", "skip"),
        ]
