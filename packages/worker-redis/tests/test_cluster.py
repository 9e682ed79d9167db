"""A real 3-master Redis Cluster on loopback: the whole flow works, on every master, with no CROSSSLOT."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from redis.asyncio.cluster import RedisCluster
from redis_helpers import task, until
from worker_core import TaskContext, TaskManager, TaskStatus
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import LeaseLostError
from worker_redis import Keys, RedisDurableBackend
from worker_redis.testing import RedisClusterServers, prefixes_per_master


@pytest.mark.parametrize("prefix", prefixes_per_master("cl"))
async def test_whole_flow_on_a_cluster(cluster: RedisClusterServers, prefix: str) -> None:
    # A plain redis:// URL of one node: the backend detects the cluster and follows it.
    backend = RedisDurableBackend.from_url(cluster.url, prefix=prefix, queue_weights={"a": 2, "b": 1})
    other = RedisDurableBackend.from_url(f"{cluster.url}?cluster=1", prefix=prefix, global_rate_limit=(1000, 100))
    try:
        await backend.connect()
        assert isinstance(backend.client, RedisCluster)
        await backend.enqueue(task(queue="a"))
        await backend.enqueue_many([task(queue=q) for q in ("a", "b") for _ in range(10)])
        leases = await other.dequeue(15, 5)
        assert len(leases) == 15
        await asyncio.gather(*(backend.ack(le) for le in leases[:10]))
        await backend.nack(leases[10], 0)
        await backend.fail(leases[11], "boom")
        await backend.extend(leases[12], 10)
        await backend.release(leases[13:])
        with pytest.raises(LeaseLostError):
            await backend.ack(leases[0])
        rest = await backend.dequeue(50, 5)
        assert len(rest) == 21 - 10 - 1 - 1  # acked 10, dead 1, one still leased (extended)
        await asyncio.gather(*(backend.ack(le) for le in rest))
        waiter = asyncio.create_task(backend.wait_for_work(30))
        await asyncio.sleep(0.05)
        await other.enqueue(task())
        async with asyncio.timeout(10):
            await waiter
        assert len(await backend.dequeue(5, 5)) == 1
        keys = Keys.for_prefix(prefix)
        client: RedisCluster = backend.client
        assert await client.lrange(keys.dead, 0, -1) == [str(leases[11].task.id).encode()]
    finally:
        await backend.aclose()
        await other.aclose()


async def test_leader_lock_on_a_cluster(cluster: RedisClusterServers) -> None:
    a = RedisDurableBackend.from_url(cluster.url, prefix="lead", leader_lock=2.0)
    b = RedisDurableBackend.from_url(cluster.url, prefix="lead", leader_lock=2.0)
    try:
        await a.enqueue(task())
        assert len(await a.dequeue(1, 5)) + len(await b.dequeue(1, 5)) == 1
        assert await a.is_leader()
        assert not await b.is_leader()
    finally:
        await a.aclose()
        await b.aclose()


async def test_task_manager_on_a_cluster(cluster: RedisClusterServers) -> None:
    done: list[str] = []

    async def greet(ctx: TaskContext, payload: StringValue) -> None:
        done.append(payload.value)

    backend = RedisDurableBackend.from_url(cluster.url, prefix=f"tm-{uuid.uuid4().hex[:6]}")
    tm = TaskManager(
        max_workers=4,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"greet": DurableHandlerSpec(StringValue, greet)},
    )
    try:
        async with tm:
            for n in range(20):
                await tm.register_durable_task(DurableTask("greet", StringValue(value=str(n))))

            async def all_done() -> bool:
                return len(done) == 20

            await until(all_done)
    finally:
        await backend.aclose()
    assert sorted(done, key=int) == [str(n) for n in range(20)]


@pytest.mark.parametrize("prefix", prefixes_per_master("res"))
async def test_the_result_store_on_a_cluster(cluster: RedisClusterServers, prefix: str) -> None:
    """Outcomes are stored, listed and waited for on every master: SPUBLISH in the script, SSUBSCRIBE on its shard."""
    waiter = RedisDurableBackend.from_url(cluster.url, prefix=prefix)
    worker = RedisDurableBackend.from_url(cluster.url, prefix=prefix)
    try:
        await waiter.connect()
        ok, bad = task(), task()
        await worker.enqueue_many([ok, bad])
        assert ok.id is not None
        assert bad.id is not None
        waiting = asyncio.create_task(waiter.wait_outcome(ok.id, 30))
        leases = {le.lease_id: le for le in await worker.dequeue(2, 30)}
        done = TaskOutcome(id=ok.id, handler="h", queue="default", status=TaskStatus.COMPLETED, result=b"7")
        failed = TaskOutcome(id=bad.id, handler="h", queue="default", status=TaskStatus.FAILED, error_type="E")
        await asyncio.sleep(0.05)  # usually subscribed by now; the key read covers it either way
        await worker.ack_with_outcome(leases[str(ok.id)], done, 60)
        await worker.fail_with_outcome(leases[str(bad.id)], "E: no", failed, 60)
        async with asyncio.timeout(30):
            assert await waiting == done
            assert await waiter.wait_outcome(bad.id, 30) == failed
        assert [o.id for o in await waiter.recent_outcomes("default", 10)] == [bad.id, ok.id]
    finally:
        await waiter.aclose()
        await worker.aclose()
