"""Durable schedules on an SQLite file: the contract, the tick transaction, and processes that die and restart.

The fleet test starts 3 worker processes on one file and one 1-second schedule, SIGKILLs one mid-way and starts it
again: every tick is enqueued exactly once (the ``enqueued`` events the tick transaction writes, counted per tick),
and none is missing between the first and the last while at least one process was alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import MakeBackend
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
from worker_sqlite import SqliteDurableBackend
from worker_sqlite.admin import SqliteAdmin


class TestSqliteSchedules(ScheduleBackendConformance):
    """The ScheduleBackend contract on a real file (one per test)."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> SqliteDurableBackend:
        return await make_backend()


class TestSqliteScheduleAdmin(ScheduleAdminConformance):
    """SqliteAdmin's schedules over the file the backend (the nodes) writes."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> SqliteDurableBackend:
        return await make_backend()

    @pytest.fixture
    async def admin(self, backend: SqliteDurableBackend, db_path: Path) -> AsyncIterator[SqliteAdmin]:
        admin = open_admin(f"sqlite:///{db_path}")  # through the plugin, as workerctl opens it
        assert isinstance(admin, SqliteAdmin)
        async with admin:
            yield admin


def _task(tick_ms: int, schedule: str = "s") -> DurableTask:
    return DurableTask("tick", None, b"{}", id=tick_task_id(schedule, tick_ms), retries=0, retry_delay=0.0)


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:  # `with connect()` alone commits but never closes
        return db.execute(query).fetchall()


async def test_the_backend_is_a_schedule_backend(make_backend: MakeBackend) -> None:
    assert isinstance(await make_backend(), ScheduleBackend)


async def test_processes_racing_on_one_tick_store_one_task(make_backend: MakeBackend, db_path: Path) -> None:
    """Many backend objects (each its own connections, as processes have) fire the same ticks: one task each."""
    nodes = [await make_backend() for _ in range(4)]
    for tick in (1_000, 2_000, 3_000):
        results = await asyncio.gather(
            *(node.enqueue_tick(_task(tick), "s", tick, 60.0, node=str(i)) for i, node in enumerate(nodes))
        )
        assert sorted(results) == sorted([TickResult.ENQUEUED] + [TickResult.DUPLICATE] * 3)
    assert _rows(db_path, "SELECT count(*) FROM tasks") == [(3,)]
    assert _rows(db_path, "SELECT schedule, tick_ms FROM schedule_ticks ORDER BY tick_ms") == [
        ("s", 1_000),
        ("s", 2_000),
        ("s", 3_000),
    ]


async def test_an_existing_task_id_undoes_the_marker(make_backend: MakeBackend, db_path: Path) -> None:
    """A tick whose task id is stored already answers DUPLICATE and leaves neither marker nor event."""
    backend = await make_backend()
    await backend.enqueue(_task(9_000))
    assert await backend.enqueue_tick(_task(9_000), "s", 9_000, 60.0) is TickResult.DUPLICATE
    assert _rows(db_path, "SELECT count(*) FROM schedule_ticks") == [(0,)]
    assert await backend.schedule_events("s", 10) == []
    assert (await backend.schedule_states(["s"]))["s"].last_tick_ms is None


async def test_expired_markers_are_pruned_in_bounded_batches(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.executemany(
            "INSERT INTO schedule_ticks (schedule, tick_ms, task_id, expires_at) VALUES ('old', ?, 'x', 1.0)",
            [(i,) for i in range(250)],
        )
    await backend.enqueue_tick(_task(1_000), "s", 1_000, 60.0)
    assert _rows(db_path, "SELECT count(*) FROM schedule_ticks WHERE schedule = 'old'") == [(150,)]
    await backend.enqueue_tick(_task(2_000), "s", 2_000, 60.0)
    await backend.enqueue_tick(_task(3_000), "s", 3_000, 60.0)
    assert _rows(db_path, "SELECT schedule, count(*) FROM schedule_ticks GROUP BY schedule") == [("s", 3)]


async def test_corrupt_rows_are_skipped_and_run_requests_taken_once(make_backend: MakeBackend, db_path: Path) -> None:
    nodes = [await make_backend() for _ in range(3)]
    await nodes[0].record_schedule_event(ScheduleEvent("s", "failed", 1, 2, error="boom"), 5)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("INSERT INTO schedule_events (schedule, data) VALUES ('s', '{not json'), ('s', '[1]')")
        db.execute("INSERT INTO schedules VALUES ('broken', X'ff00', 'UTC', 'q', 'skip', 0)")  # a blob spec
        db.execute("INSERT INTO schedule_state (name, last_tick_ms) VALUES ('t', 'not-a-number')")
    assert [e.error for e in await nodes[1].schedule_events("s", 10)] == ["boom"]
    states = await nodes[1].schedule_states(["s", "t"])
    assert states["s"].last_event is None  # the newest row is corrupt: no event rather than an error
    assert states["t"].last_tick_ms is None
    await nodes[2].publish_schedules([ScheduleRecord("a", "@hourly", "UTC", "default", "once")])
    assert [r.name for r in await nodes[0].list_schedules()] == ["a"]  # the row whose spec is a blob is skipped
    await nodes[0].request_schedule_run("a")
    await nodes[0].request_schedule_run("a")  # asked twice before a poll: one run
    taken = await asyncio.gather(*(node.take_schedule_runs(["a", "b"]) for node in nodes))
    assert sorted(map(len, taken)) == [0, 0, 1]
    assert await nodes[0].take_schedule_runs(["a"]) == []


async def test_a_fresh_id_for_a_paused_schedule_stores_nothing(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    await backend.set_schedule_paused("s", True)
    task = DurableTask("tick", None, b"{}", id=uuid.uuid4())
    assert await backend.enqueue_tick(task, "s", 1_000, 60.0) is TickResult.PAUSED
    assert _rows(db_path, "SELECT count(*) FROM tasks") == [(0,)]
    assert _rows(db_path, "SELECT count(*) FROM schedule_ticks") == [(0,)]


async def test_records_nobody_republished_expire(make_backend: MakeBackend, db_path: Path) -> None:
    nodes = [await make_backend() for _ in range(2)]
    await nodes[0].publish_schedules([ScheduleRecord("gone", "@hourly", "UTC", "default")])
    await nodes[1].publish_schedules([ScheduleRecord("kept", "@daily", "UTC", "default")])
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:  # "gone" last published over the TTL ago
        db.execute("UPDATE schedules SET published_at = published_at - ? WHERE name = 'gone'", (PUBLISHED_TTL_S + 1,))
    assert [r.name for r in await nodes[0].list_schedules()] == ["kept"]  # not listed once expired
    await nodes[1].publish_schedules([ScheduleRecord("kept", "@daily", "UTC", "default")])
    assert _rows(db_path, "SELECT name FROM schedules") == [("kept",)]  # and deleted by the next publication
