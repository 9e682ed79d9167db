"""PostgresAdmin as worker-core's TaskBrowser: indexed walks, paging past one chunk, bounds, the v1 -> v2 migration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import MakeBackend
from pg_helpers import rows, task
from psycopg import sql
from worker_core.admin import BROWSE_SCAN_LIMIT, TaskBrowser
from worker_core.errors import ConfigurationError
from worker_postgres import SCHEMA_VERSION, PostgresAdmin, PostgresDurableBackend, _schema
from worker_postgres._browse import browse_query


@pytest.fixture
async def admin(backend: PostgresDurableBackend, pg_url: str) -> AsyncIterator[PostgresAdmin]:
    async with PostgresAdmin.from_url(pg_url) as admin:
        yield admin


@pytest.mark.parametrize("state", ["ready", "delayed", "processing", "dead"])
@pytest.mark.parametrize("queue", ["", "emails"])
async def test_every_walk_is_an_index_range_without_a_sort(
    backend: PostgresDurableBackend, state: str, queue: str
) -> None:
    if queue:  # a queue of few tasks among many in the state: its index is the one the planner takes
        later = datetime.now(UTC) + timedelta(hours=1) if state == "delayed" else None
        await backend.enqueue_many([task(queue="bulk", run_at=later) for _ in range(2000)])
        await backend.enqueue_many([task(queue="emails", run_at=later) for _ in range(5)])
        if state == "processing":
            assert len(await backend.dequeue(2005, 60.0)) == 2005
        await rows(backend, "ANALYZE {s}.tasks")
    query = browse_query(state, queue=queue, handler="h", since_ms=1, until_ms=0, limit=10, offset=0)
    schema = sql.Identifier(backend.schema)
    params = {**query.args, "at": datetime.now(UTC) + timedelta(days=1), "seq": 2**40, "want": 5}
    async with backend._connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a small table: make the planner show its index
        await conn.execute("SET LOCAL enable_sort = off")
        for statement in query.statements(schema):
            plan = "\n".join(
                r[0] for r in await (await conn.execute(sql.SQL("EXPLAIN ") + statement, params)).fetchall()
            )
            assert "Index Scan Backward" in plan, plan
            assert "Sort" not in plan, plan  # walked in index order, nothing sorted
            assert ("queue =" in plan.split("Filter")[0]) == bool(queue), plan  # the queue is an index condition


async def test_pages_past_one_chunk_with_a_handler_filter(
    admin: PostgresAdmin, backend: PostgresDurableBackend
) -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    made = [task(handler="a" if i % 3 else "b", run_at=soon + timedelta(milliseconds=i)) for i in range(700)]
    await backend.enqueue_many(made)
    wanted = [str(t.id) for t in reversed(made) if t.handler == "b"]
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
    everything = await admin.browse_tasks("delayed", queue="default", limit=200, offset=450)
    assert [t.id for t in everything.tasks] == [str(t.id) for t in reversed(made)][450:650]
    assert (everything.scanned, everything.has_more) == (651, True)
    assert everything.tasks[0].score == everything.tasks[0].ready_at_ms  # when it is due


async def test_the_scan_bound_truncates_a_filter_that_matches_late(
    admin: PostgresAdmin, backend: PostgresDurableBackend
) -> None:
    await backend.enqueue(task(handler="rare"))  # the oldest: the walk reaches it only after every other task
    await backend.enqueue_many([task(handler="common") for _ in range(BROWSE_SCAN_LIMIT)])
    page = await admin.browse_tasks("ready", handler="rare")
    assert (page.tasks, page.truncated, page.has_more, page.scanned) == ((), True, False, BROWSE_SCAN_LIMIT)
    assert (await admin.browse_tasks("ready", offset=BROWSE_SCAN_LIMIT)).truncated


async def test_time_bounds_are_inclusive_to_the_millisecond(
    admin: PostgresAdmin, backend: PostgresDurableBackend
) -> None:
    await backend.enqueue(task(run_at=datetime.now(UTC) + timedelta(hours=1)))
    [found] = (await admin.browse_tasks("delayed")).tasks
    at = found.score
    assert (await admin.browse_tasks("delayed", since_ms=at, until_ms=at)).tasks
    assert not (await admin.browse_tasks("delayed", since_ms=at + 1)).tasks
    assert not (await admin.browse_tasks("delayed", until_ms=at - 1)).tasks
    assert await admin.task_payload(found.id) == b"p"
    with pytest.raises(ConfigurationError, match="since_ms"):
        await admin.browse_tasks("delayed", since_ms=-1)


async def test_a_version_1_schema_migrates_and_keeps_its_tasks(
    pg_url: str, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the package as it shipped schema version 1
        patch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:1])
        patch.setattr(_schema, "SCHEMA_VERSION", 1)
        old = await make_backend()
        await old.enqueue_many([task(handler="old"), task(handler="dead")])
        [lease] = [x for x in await old.dequeue(2, 30.0) if x.task.handler == "dead"]
        await old.fail(lease, "boom")
    fresh = PostgresDurableBackend.from_url(pg_url)
    try:
        with pytest.raises(ConfigurationError, match="version 1"):
            await fresh.connect()  # an older schema is refused until migrated
        assert await fresh.migrate() == SCHEMA_VERSION
        indexes = dict(
            await rows(fresh, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", fresh.schema)
        )
    finally:
        await fresh.aclose()
    assert "(queue, available_at, seq)" in indexes["tasks_next"]
    assert {"tasks_ready_all", "tasks_leased_all", "tasks_dead_queue"} <= set(indexes)
    async with PostgresAdmin.from_url(pg_url) as admin:
        assert isinstance(admin, TaskBrowser)
        dead = (await admin.browse_tasks("dead")).tasks
        leased_or_ready = {t.handler for s in ("ready", "processing") for t in (await admin.browse_tasks(s)).tasks}
    assert [(t.handler, t.last_error) for t in dead] == [("dead", "boom")]
    assert leased_or_ready == {"old"}


async def test_an_empty_queue_name_means_the_backends_default_queue(pg_url: str, make_backend: MakeBackend) -> None:
    backend = await make_backend(default_queue="mail")
    await backend.enqueue(task())  # no queue: the backend's default, "mail"
    async with PostgresAdmin.from_url(f"{pg_url}&default_queue=mail") as admin:
        assert admin.default_queue == "mail"
        assert [q.name for q in (await admin.overview([""])).queues] == ["mail"]
        await admin.pause_queue("")
        assert (await admin.pause_state()).paused_queues == ("mail",)
        page = await admin.browse_tasks("ready", queue=" ")
        assert [t.queue for t in page.tasks] == ["mail"]
    async with PostgresAdmin.from_url(pg_url) as admin:
        assert admin.default_queue == "default"
