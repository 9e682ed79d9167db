"""Admin moves against the real backend: a worker whose task was moved by an operator loses its lease."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from worker_core.durable import DurableTask
from worker_core.errors import LeaseLostError, TaskNotFoundError
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin, SnapshotEntry, TaskState
from worker_redis.testing import RedisServer, redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
async def pair(server: RedisServer) -> AsyncIterator[tuple[Tasks, RedisAdmin]]:
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(server.url)
    backend = RedisDurableBackend(client, prefix=prefix)
    admin = RedisAdmin.from_url(server.url, prefix=prefix)
    try:
        yield Tasks(backend), admin
    finally:
        await admin.aclose()
        await client.aclose()


class Tasks:
    def __init__(self, backend: RedisDurableBackend) -> None:
        self.backend = backend

    async def enqueue(self, queue: str = "default", retries: int = 2) -> str:
        task_id = uuid.uuid4()
        await self.backend.enqueue(
            DurableTask("h", payload=b"\x00p", id=task_id, queue=queue, retries=retries, retry_delay=1.0)
        )
        return str(task_id)


async def test_requeue_from_processing_rejects_the_old_holders_ack(pair: tuple[Tasks, RedisAdmin]) -> None:
    tasks, admin = pair
    tid = await tasks.enqueue()
    (lease,) = await tasks.backend.dequeue(1, 30.0)
    assert (await admin.get(tid)).status is TaskState.PROCESSING
    assert (await admin.requeue([tid])).count == 1
    with pytest.raises(LeaseLostError):
        await tasks.backend.ack(lease)
    with pytest.raises(LeaseLostError):
        await tasks.backend.fail(lease, "late")
    (again,) = await tasks.backend.dequeue(1, 30.0)
    assert str(again.task.id) == tid
    assert again.attempts == 2
    await tasks.backend.ack(again)
    with pytest.raises(TaskNotFoundError):
        await admin.get(tid)


async def test_delete_keeping_the_hash_fences_the_holder(pair: tuple[Tasks, RedisAdmin]) -> None:
    tasks, admin = pair
    tid = await tasks.enqueue()
    (lease,) = await tasks.backend.dequeue(1, 30.0)
    assert (await admin.delete([tid])).count == 1
    with pytest.raises(LeaseLostError):
        await tasks.backend.ack(lease)
    assert (await admin.get(tid)).status is TaskState.UNKNOWN  # the hash stays for inspection


async def test_a_failed_task_replayed_with_reset_attempts_gets_its_retries_again(
    pair: tuple[Tasks, RedisAdmin],
) -> None:
    tasks, admin = pair
    tid = await tasks.enqueue(queue="mail", retries=0)
    (lease,) = await tasks.backend.dequeue(1, 30.0)
    await tasks.backend.fail(lease, "smtp down")
    page = await admin.dlq()
    assert [(e.id, e.queue, e.attempts, e.last_error) for e in page.entries] == [(tid, "mail", 1, "smtp down")]
    assert (await admin.replay_dlq(reset_attempts=True)).count == 1
    (again,) = await tasks.backend.dequeue(1, 30.0)
    assert (str(again.task.id), again.attempts, again.task.payload) == (tid, 1, b"\x00p")


async def test_imported_snapshot_entries_are_leased_by_the_backend(pair: tuple[Tasks, RedisAdmin]) -> None:
    tasks, admin = pair
    tid = await tasks.enqueue(queue="q")
    entries = [e async for e in admin.export(limit=0)]
    await admin.delete([tid], delete_hash=True)
    assert await admin.import_entries([SnapshotEntry.from_json(e.to_json()) for e in entries]) == 1
    (lease,) = await tasks.backend.dequeue(1, 30.0)
    assert (str(lease.task.id), lease.task.payload, lease.task.queue) == (tid, b"\x00p", "q")
    await tasks.backend.ack(lease)
