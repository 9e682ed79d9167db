"""SqliteAdmin as worker-core's TaskBrowser: indexed walks, paging past one chunk, bounds, the v1 -> v2 migration."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import MakeBackend
from helpers import task
from worker_core.admin import BROWSE_SCAN_LIMIT, TaskBrowser
from worker_core.errors import ConfigurationError
from worker_sqlite import SCHEMA_VERSION, SqliteDurableBackend
from worker_sqlite._browse import browse_query
from worker_sqlite._schema import MIGRATIONS
from worker_sqlite.admin import SqliteAdmin


@pytest.fixture
async def admin(db_path: Path) -> AsyncIterator[SqliteAdmin]:
    async with SqliteAdmin(str(db_path), create=True) as admin:  # the first to open the file
        yield admin


def _plans(db_path: Path, state: str, **filters: str) -> list[str]:
    """EXPLAIN QUERY PLAN of both statements of a walk (first page, keyset page)."""
    query = browse_query(state, since_ms=1, until_ms=2**41, limit=10, offset=0, now=time.time(), **filters)
    col = query.column
    base = f"SELECT seq, {col}, handler FROM tasks WHERE {query.where}"
    after = f"{base} AND {col} <= ? AND ({col} < ? OR seq < ?)"
    order = f" ORDER BY {col} DESC, seq DESC LIMIT 5"
    db = sqlite3.connect(db_path)
    try:
        return [
            " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}{order}", args))
            for sql, args in ((base + query.upper, (*query.args, *query.upper_args)), (after, (*query.args, 1, 1, 1)))
        ]
    finally:
        db.close()


@pytest.mark.parametrize("state", ["ready", "delayed", "processing", "dead"])
@pytest.mark.parametrize("queue", ["", "emails"])
async def test_every_walk_is_an_index_range_without_a_sort(
    admin: SqliteAdmin, db_path: Path, state: str, queue: str
) -> None:
    await admin.ping()  # the file and its schema exist
    first, after = _plans(db_path, state, queue=queue, handler="h")
    for plan in (first, after):
        assert "USING INDEX" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # walked in index order, nothing sorted
        assert ("queue=?" in plan) == bool(queue), plan  # the queue is part of the index range
    assert (first.count("<"), first.count(">")) == (1, 1), first  # one range: the tightest of the bounds
    assert after.count("<") == 1, after  # a keyset page starts at its key: no re-walk of the pages before it


async def test_pages_past_one_chunk_with_a_handler_filter(admin: SqliteAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    soon = datetime.now(UTC) + timedelta(hours=1)
    made = [task(handler="a" if i % 3 else "b", run_at=soon + timedelta(milliseconds=i)) for i in range(700)]
    await backend.enqueue_many(made)
    wanted = [str(t.id) for t in reversed(made) if t.handler == "b"]  # 234, newest first
    seen: list[str] = []
    offset = 0
    while True:
        page = await admin.browse_tasks("delayed", handler="b", limit=100, offset=offset)
        seen += [t.id for t in page.tasks]
        assert not page.truncated
        if not page.has_more:
            break
        offset += 100
    assert seen == wanted
    everything = await admin.browse_tasks("delayed", limit=200, offset=450)
    assert [t.id for t in everything.tasks] == [str(t.id) for t in reversed(made)][450:650]
    assert (everything.scanned, everything.has_more) == (651, True)


async def test_the_scan_bound_truncates_a_filter_that_matches_late(
    admin: SqliteAdmin, make_backend: MakeBackend
) -> None:
    backend = await make_backend()
    rare = task(handler="rare")
    await backend.enqueue(rare)  # the oldest: the walk reaches it only after every other task
    await backend.enqueue_many([task(handler="common") for _ in range(BROWSE_SCAN_LIMIT)])
    page = await admin.browse_tasks("ready", handler="rare")
    assert (page.tasks, page.truncated, page.has_more, page.scanned) == ((), True, False, BROWSE_SCAN_LIMIT)
    assert [t.id for t in (await admin.browse_tasks("ready", offset=BROWSE_SCAN_LIMIT)).tasks] == []
    assert (await admin.browse_tasks("ready", offset=BROWSE_SCAN_LIMIT)).truncated


async def test_time_bounds_are_inclusive_to_the_millisecond(admin: SqliteAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    at = datetime.now(UTC) + timedelta(hours=1)
    t = task(run_at=at)
    await backend.enqueue(t)
    [found] = (await admin.browse_tasks("delayed")).tasks
    assert (await admin.browse_tasks("delayed", since_ms=found.ready_at_ms, until_ms=found.ready_at_ms)).tasks
    assert not (await admin.browse_tasks("delayed", since_ms=found.ready_at_ms + 1)).tasks
    assert not (await admin.browse_tasks("delayed", until_ms=found.ready_at_ms - 1)).tasks
    with pytest.raises(ConfigurationError, match="since_ms"):
        await admin.browse_tasks("delayed", since_ms=-1)


async def test_a_delayed_row_past_its_time_is_ready_before_promotion(admin: SqliteAdmin, db_path: Path) -> None:
    async with SqliteAdmin(str(db_path)) as other:
        await other.ping()
    t = task(run_at=datetime.now(UTC) + timedelta(hours=1))
    backend = SqliteDurableBackend(db_path)
    await backend.enqueue(t)
    await backend.aclose()
    db = sqlite3.connect(db_path)
    db.execute("UPDATE tasks SET ready_at = ready_at - 7200")  # its time came while no worker ran
    db.commit()
    db.close()
    assert [x.id for x in (await admin.browse_tasks("ready")).tasks] == [str(t.id)]
    assert (await admin.browse_tasks("delayed")).tasks == ()


async def test_a_version_1_file_migrates_on_open_and_keeps_its_tasks(db_path: Path) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    version, statements = MIGRATIONS[0]
    assert version == 1
    for statement in statements:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO tasks (id, queue, handler, payload, state, ready_at, enqueued_at) "
        "VALUES ('00000000-0000-4000-8000-000000000001', 'default', 'old', x'7b7d', 'ready', 1, 1)"
    )
    db.close()
    async with SqliteAdmin(str(db_path)) as admin:
        page = await admin.browse_tasks("ready")
        assert isinstance(admin, TaskBrowser)
        assert await admin.task_payload(page.tasks[0].id) == b"{}"
    assert [t.handler for t in page.tasks] == ["old"]
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        db.close()
    assert {"tasks_waiting", "tasks_waiting_queue", "tasks_leased_queue", "tasks_dead_queue"} <= names
