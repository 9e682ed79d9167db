"""Durable schedules on a real PostgreSQL server: the contract and the tick transaction under races.

The fleet test (3 worker processes, one SIGKILLed and restarted) is ``test_schedule_fleet.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import MakeBackend
from pg_helpers import rows
from worker_core.admin import open_admin
from worker_core.durable import DurableTask
from worker_core.schedules import (
    PUBLISHED_TTL_S,
    ScheduleBackend,
    ScheduleEvent,
    ScheduleRecord,
    TickResult,
    tick_task_id,
)
from worker_core.testing import ScheduleAdminConformance, ScheduleBackendConformance
from worker_postgres import PostgresAdmin, PostgresDurableBackend


class TestPostgresSchedules(ScheduleBackendConformance):
    """The ScheduleBackend contract against a real server (one schema per test)."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> PostgresDurableBackend:
        return await make_backend()


class TestPostgresScheduleAdmin(ScheduleAdminConformance):
    """PostgresAdmin's schedules over the schema the backend (the nodes) writes."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> PostgresDurableBackend:
        return await make_backend()

    @pytest.fixture
    async def admin(self, backend: PostgresDurableBackend, pg_url: str) -> AsyncIterator[PostgresAdmin]:
        admin = open_admin(pg_url)  # through the plugin, as workerctl opens it
        assert isinstance(admin, PostgresAdmin)
        async with admin:
            yield admin


def _task(tick_ms: int, schedule: str = "s") -> DurableTask:
    return DurableTask("tick", None, b"{}", id=tick_task_id(schedule, tick_ms), retries=0, retry_delay=0.0)


async def test_the_backend_is_a_schedule_backend(backend: PostgresDurableBackend) -> None:
    assert isinstance(backend, ScheduleBackend)


async def test_nodes_racing_on_one_tick_store_one_task(make_backend: MakeBackend) -> None:
    """Backends with pools of their own (as nodes have) fire the same ticks at once: one task per tick."""
    nodes = [await make_backend() for _ in range(4)]
    for tick in (1_000, 2_000, 3_000):
        results = await asyncio.gather(
            *(node.enqueue_tick(_task(tick), "s", tick, 60.0, node=str(i)) for i, node in enumerate(nodes))
        )
        assert sorted(results) == sorted([TickResult.ENQUEUED] + [TickResult.DUPLICATE] * 3)
    assert await rows(nodes[0], "SELECT count(*) FROM {s}.tasks") == [(3,)]
    ticks = await rows(nodes[0], "SELECT schedule, tick_ms FROM {s}.schedule_ticks ORDER BY tick_ms")
    assert ticks == [("s", 1_000), ("s", 2_000), ("s", 3_000)]
    assert len(await nodes[1].schedule_events("s", 100)) == 3


async def test_an_existing_task_id_rolls_the_marker_back(backend: PostgresDurableBackend) -> None:
    await backend.enqueue(_task(9_000))
    assert await backend.enqueue_tick(_task(9_000), "s", 9_000, 60.0) is TickResult.DUPLICATE
    assert await rows(backend, "SELECT count(*) FROM {s}.schedule_ticks") == [(0,)]
    assert await backend.schedule_events("s", 10) == []
    assert (await backend.schedule_states(["s"]))["s"].last_tick_ms is None


async def test_expired_markers_are_pruned_in_bounded_batches(backend: PostgresDurableBackend) -> None:
    await rows(
        backend,
        "INSERT INTO {s}.schedule_ticks SELECT 'old', g, gen_random_uuid(), now() - interval '1 hour'"
        " FROM generate_series(1, 250) g",
    )
    await backend.enqueue_tick(_task(1_000), "s", 1_000, 60.0)
    assert await rows(backend, "SELECT count(*) FROM {s}.schedule_ticks WHERE schedule = 'old'") == [(150,)]
    await backend.enqueue_tick(_task(2_000), "s", 2_000, 60.0)
    await backend.enqueue_tick(_task(3_000), "s", 3_000, 60.0)
    assert await rows(backend, "SELECT schedule, count(*) FROM {s}.schedule_ticks GROUP BY schedule") == [("s", 3)]


async def test_events_are_bounded_and_run_requests_taken_once(make_backend: MakeBackend) -> None:
    nodes = [await make_backend() for _ in range(3)]
    await nodes[0].record_schedule_event(ScheduleEvent("s", "failed", 1, 2, error="boom"), 5)
    await rows(nodes[0], """INSERT INTO {s}.schedule_events (schedule, data) VALUES ('s', '{"kind": "x"}')""")
    assert [e.error for e in await nodes[1].schedule_events("s", 10)] == ["boom"]  # the foreign row is skipped
    assert (await nodes[1].schedule_states(["s"]))["s"].last_event is None
    for i in range(5):
        await nodes[i % 3].record_schedule_event(ScheduleEvent("s", "skipped", i), 3)
    assert [e.at_ms for e in await nodes[0].schedule_events("s", 100)] == [4, 3, 2]
    await nodes[2].publish_schedules([ScheduleRecord("a", "@hourly", "UTC", "default", "once")])
    assert await nodes[0].list_schedules() == [ScheduleRecord("a", "@hourly", "UTC", "default", "once")]
    await nodes[0].request_schedule_run("a")
    await nodes[0].request_schedule_run("a")  # asked twice before a poll: one run
    taken = await asyncio.gather(*(node.take_schedule_runs(["a", "b"]) for node in nodes))
    assert sorted(map(len, taken)) == [0, 0, 1]
    assert await nodes[0].take_schedule_runs(["a"]) == []


async def test_a_paused_schedule_stores_nothing(backend: PostgresDurableBackend) -> None:
    await backend.set_schedule_paused("s", True)
    task = DurableTask("tick", None, b"{}", id=uuid.uuid4())
    assert await backend.enqueue_tick(task, "s", 1_000, 60.0) is TickResult.PAUSED
    assert await rows(backend, "SELECT count(*) FROM {s}.tasks") == [(0,)]
    assert await rows(backend, "SELECT count(*) FROM {s}.schedule_ticks") == [(0,)]


async def test_records_nobody_republished_expire(make_backend: MakeBackend) -> None:
    nodes = [await make_backend() for _ in range(2)]
    await nodes[0].publish_schedules([ScheduleRecord("gone", "@hourly", "UTC", "default")])
    await nodes[1].publish_schedules([ScheduleRecord("kept", "@daily", "UTC", "default")])
    await rows(  # "gone" last published over the TTL ago
        nodes[0],
        "UPDATE {s}.schedules SET published_at = published_at - make_interval(secs => %s) WHERE name = 'gone'",
        PUBLISHED_TTL_S + 1,
    )
    assert [r.name for r in await nodes[0].list_schedules()] == ["kept"]  # not listed once expired
    await nodes[1].publish_schedules([])  # a node with no durable schedule left still prunes
    assert await rows(nodes[0], "SELECT name FROM {s}.schedules") == [("kept",)]
