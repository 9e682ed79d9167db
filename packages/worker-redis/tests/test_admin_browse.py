"""RedisAdmin as worker-core's optional TaskBrowser: tasks by state, filtered and paged, newest first, bounded."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, task
from worker_core.admin import BROWSE_PAGE_LIMIT, DurableAdmin, TaskBrowser
from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_redis.admin import RedisAdmin


@pytest.fixture
async def admin(raw: Redis, prefix: str) -> RedisAdmin:
    return RedisAdmin(raw, prefix=prefix)


async def test_redis_admin_is_a_task_browser(admin: RedisAdmin) -> None:
    assert isinstance(admin, DurableAdmin)
    assert isinstance(admin, TaskBrowser)


async def test_tasks_newest_first_over_every_queue_with_paging(admin: RedisAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    soon = datetime.now(UTC) + timedelta(minutes=10)  # delayed: each keeps its own ready-at score
    made = []
    for i in range(7):
        t = task(
            handler="even" if i % 2 == 0 else "odd", queue="a" if i < 4 else "b", run_at=soon + timedelta(seconds=i)
        )
        await backend.enqueue(t)
        made.append(str(t.id))
    newest_first = list(reversed(made))
    first = await admin.browse_tasks("delayed", limit=3)
    assert [t.id for t in first.tasks] == newest_first[:3]
    assert (first.has_more, first.truncated) == (True, False)
    second = await admin.browse_tasks("delayed", limit=3, offset=3)
    last = await admin.browse_tasks("delayed", limit=3, offset=6)
    assert [t.id for t in second.tasks + last.tasks] == newest_first[3:]
    assert last.has_more is False
    only_a = await admin.browse_tasks("delayed", queue="a", handler="even")
    assert (await admin.browse_tasks("ready")).tasks == ()
    assert [t.id for t in only_a.tasks] == [made[2], made[0]]
    assert {t.queue for t in only_a.tasks} == {"a"}


async def test_delayed_and_time_bounds(admin: RedisAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    now = datetime.now(UTC)
    due, later, latest = task(), task(run_at=now + timedelta(hours=1)), task(run_at=now + timedelta(hours=3))
    for t in (due, later, latest):
        await backend.enqueue(t)
    assert [t.id for t in (await admin.browse_tasks("ready")).tasks] == [str(due.id)]
    assert [t.id for t in (await admin.browse_tasks("delayed")).tasks] == [str(latest.id), str(later.id)]
    in_two_hours = int((time.time() + 7200) * 1000)
    assert [t.id for t in (await admin.browse_tasks("delayed", since_ms=in_two_hours)).tasks] == [str(latest.id)]
    assert [t.id for t in (await admin.browse_tasks("delayed", until_ms=in_two_hours)).tasks] == [str(later.id)]
    assert (await admin.browse_tasks("ready", since_ms=in_two_hours)).tasks == ()


async def test_processing_and_dead(admin: RedisAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    for _ in range(2):
        await backend.enqueue(task(handler="h"))
    leased = await backend.dequeue(2, 30.0)
    await backend.fail(leased[0], "boom")
    processing = await admin.browse_tasks("processing")
    assert [t.id for t in processing.tasks] == [str(leased[1].task.id)]
    assert processing.tasks[0].status.value == "processing"
    dead = await admin.browse_tasks("dead")
    assert [(t.id, t.last_error) for t in dead.tasks] == [(str(leased[0].task.id), "boom")]
    assert (await admin.browse_tasks("dead", handler="other")).tasks == ()


async def test_payload_and_bad_arguments(admin: RedisAdmin, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    t = task(payload=b'{"password": "x"}')
    await backend.enqueue(t)
    assert await admin.task_payload(str(t.id)) == b'{"password": "x"}'
    with pytest.raises(TaskNotFoundError):
        await admin.task_payload("nope")
    with pytest.raises(ConfigurationError, match="state must be one of"):
        await admin.browse_tasks("finished")
    with pytest.raises(ConfigurationError, match="limit"):
        await admin.browse_tasks("ready", limit=BROWSE_PAGE_LIMIT + 1)
    with pytest.raises(ConfigurationError, match="offset"):
        await admin.browse_tasks("ready", offset=-1)


async def test_orphan_ids_are_skipped(admin: RedisAdmin, raw: Redis, make_backend: MakeBackend) -> None:
    backend = await make_backend()
    t = task()
    await backend.enqueue(t)
    await raw.zadd(admin.keys.ready("default"), {"ghost": 1})
    page = await admin.browse_tasks("ready")
    assert [x.id for x in page.tasks] == [str(t.id)]
    assert page.scanned == 2
