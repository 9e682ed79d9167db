"""The admin operations on a real 3-master Redis Cluster: every script's keys share a slot (no CROSSSLOT)."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio.cluster import RedisCluster
from worker_core.durable import DurableTask
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin, SnapshotEntry, TaskState
from worker_redis.testing import RedisClusterServers, prefixes_per_master


@pytest.mark.parametrize("prefix", prefixes_per_master("adm"))
async def test_every_admin_operation_on_a_cluster(cluster: RedisClusterServers, prefix: str) -> None:
    client = RedisCluster.from_url(cluster.url)
    backend = RedisDurableBackend(client, prefix=prefix)
    admin = RedisAdmin(client, prefix=prefix)
    try:
        ids = [uuid.uuid4() for _ in range(4)]
        for i, task_id in enumerate(ids):
            await backend.enqueue(DurableTask("h", payload=b"\xff", id=task_id, queue="ab"[i % 2], retries=0))
        leases = await backend.dequeue(2, 30.0)
        await backend.fail(leases[0], "boom")
        dead, held = str(leases[0].task.id), str(leases[1].task.id)
        ov = await admin.overview()
        assert (ov.total_ready, ov.total_processing, ov.dead) == (2, 1, 1)
        assert (await admin.get(dead)).status is TaskState.DEAD
        assert [e.id for e in (await admin.dlq(query="")).entries] == [dead]
        assert [e.id for e in (await admin.dlq(handler="h")).entries] == [dead]
        await admin.pause_queue("a")
        assert (await admin.pause_state()).paused_queues == ("a",)
        await admin.resume_queue("a")
        assert (await admin.requeue([held], queue="b")).count == 1
        assert (await admin.replay_dlq(limit=0)).count == 1
        assert await admin.missing_ids([dead, "nope"]) == ["nope"]
        records = [r async for r in admin.dump(processing=True, dlq=True, limit=0)]
        assert len(records) == 4
        entries = [e async for e in admin.export(limit=0)]
        assert (await admin.delete([str(ids[3])], delete_hash=True)).count == 1
        assert await admin.import_entries([SnapshotEntry.from_json(e.to_json()) for e in entries]) == 4
        purged = await admin.purge(ready=True, processing=True, dlq=True, delete_hash=True)
        assert sum(purged.ready.values()) == 4
        assert (await admin.overview()).total_ready == 0
    finally:
        await client.aclose()
