"""go-worker's Redis integration tests and the behaviours we add: fencing, batching, weights."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, task, until
from worker_core.errors import ConfigurationError, DurableTaskExistsError, InvalidTaskError, LeaseLostError
from worker_redis import Keys
from worker_redis.admin import RedisAdmin

# -- go-worker's tests/durable_redis_integration_test.go ---------------------------------------------


async def test_enqueue_dequeue_ack(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    t = task(payload=b"\x00\xffbin", metadata={"env": "prod"}, retries=2, retry_delay=1.5, priority=3)
    await backend.enqueue(t)
    [lease] = await backend.dequeue(1, 2)
    assert lease.task.id == t.id
    assert lease.lease_id == str(t.id)
    assert lease.task.payload == b"\x00\xffbin"
    assert lease.task.metadata == {"env": "prod"}
    assert (lease.attempts, lease.max_retries, lease.task.retry_delay, lease.task.priority) == (1, 2, 1.5, 3)
    assert lease.task.queue == "default"
    assert lease.token
    await backend.ack(lease)
    assert await backend.dequeue(1, 2) == []


async def test_nack_requeues_after_delay(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 2)
    await backend.nack(lease, 0.05)
    assert await backend.dequeue(1, 2) == []
    [again] = await until(lambda: backend.dequeue(1, 2))
    assert again.lease_id == lease.lease_id
    assert again.attempts == 2


async def test_lease_expires_and_requeues(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 0.2)
    [again] = await until(lambda: backend.dequeue(1, 0.2))
    assert again.lease_id == lease.lease_id
    assert again.attempts >= 2


async def test_extend_prevents_requeue(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 0.2)
    await backend.extend(lease, 0.6)
    await asyncio.sleep(0.35)  # past the first lease, within the extended one
    assert await backend.dequeue(1, 0.2) == []
    [again] = await until(lambda: backend.dequeue(1, 0.2))
    assert again.attempts >= 2


async def test_fail_moves_to_dlq_with_reason(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    backend = await make_backend()
    t = task()
    await backend.enqueue(t)
    [lease] = await backend.dequeue(1, 2)
    await backend.fail(lease, "bad payload")
    keys = Keys.for_prefix(prefix)
    assert await raw.lrange(keys.dead, 0, -1) == [str(t.id).encode()]
    record = await raw.hgetall(keys.task(str(t.id)))
    assert record[b"last_error"] == b"bad payload"
    assert int(record[b"failed_at_ms"]) > 0
    assert record[b"payload"] == b"p"  # kept for replay
    assert await raw.zcard(keys.processing("default")) == 0
    assert await backend.dequeue(1, 2) == []


async def test_global_rate_limit(make_backend: MakeBackend) -> None:
    backend = await make_backend(global_rate_limit=(1.0, 1))
    await backend.enqueue_many([task(), task()])
    assert len(await backend.dequeue(2, 5)) == 1
    assert await backend.dequeue(2, 5) == []
    await asyncio.sleep(1.1)
    assert len(await backend.dequeue(2, 5)) == 1


async def test_global_rate_limit_spends_tokens_only_on_leased_tasks(make_backend: MakeBackend) -> None:
    backend = await make_backend(global_rate_limit=(0.01, 3))
    assert await backend.dequeue(3, 5) == []  # nothing to lease: the 3 tokens stay in the bucket
    await backend.enqueue_many([task() for _ in range(4)])
    assert len(await backend.dequeue(10, 5)) == 3
    assert await backend.dequeue(10, 5) == []


async def test_leader_lock_one_node_dequeues(make_backend: MakeBackend) -> None:
    a = await make_backend(leader_lock=2.0)
    b = await make_backend(leader_lock=2.0)
    await a.enqueue(task())
    got_a = await a.dequeue(1, 5)
    got_b = await b.dequeue(1, 5)
    assert len(got_a) + len(got_b) == 1
    assert await a.is_leader()
    assert not await b.is_leader()


async def test_leader_lock_renewed_without_dequeue_and_handed_over_on_close(make_backend: MakeBackend) -> None:
    a = await make_backend(leader_lock=0.3)
    b = await make_backend(leader_lock=0.3)
    assert await a.is_leader()
    await asyncio.sleep(0.9)  # three leases long, no dequeue: the background renewal keeps it
    assert await a.is_leader()
    assert not await b.is_leader()
    await a.aclose()
    assert await until(b.is_leader, timeout=5)


# -- fencing ---------------------------------------------------------------------------------------


async def test_stale_lease_cannot_ack_nack_fail_or_extend(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    backend = await make_backend()
    t = task()
    await backend.enqueue(t)
    [stale] = await backend.dequeue(1, 0.1)
    [current] = await until(lambda: backend.dequeue(1, 5))
    assert current.token != stale.token
    key = Keys.for_prefix(prefix).task(str(t.id))
    before = await raw.hgetall(key)
    for op in (backend.ack(stale), backend.nack(stale, 0), backend.fail(stale, "x"), backend.extend(stale, 5)):
        with pytest.raises(LeaseLostError):
            await op
    assert await raw.hgetall(key) == before
    await backend.release([stale])  # a lost lease is skipped
    assert await raw.hgetall(key) == before
    await backend.ack(current)
    assert not await raw.exists(key)


async def test_requeued_but_not_redelivered_lease_is_lost(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    backend = await make_backend()
    other = await make_backend()
    await backend.enqueue(task())
    [stale] = await backend.dequeue(1, 0.05)
    await raw.set(Keys.for_prefix(prefix).paused, "1")
    await asyncio.sleep(0.1)
    assert await other.dequeue(1, 5) == []  # paused: the expired lease is requeued, not redelivered
    with pytest.raises(LeaseLostError):
        await backend.ack(stale)
    await raw.delete(Keys.for_prefix(prefix).paused)
    [again] = await other.dequeue(1, 5)
    assert again.lease_id == stale.lease_id


async def test_ack_after_ack_is_lease_lost(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 5)
    await backend.ack(lease)
    with pytest.raises(LeaseLostError):
        await backend.ack(lease)
    with pytest.raises(LeaseLostError):
        await backend.nack(lease, 0)  # go-worker would recreate a stub hash here


# -- enqueue ---------------------------------------------------------------------------------------


async def test_duplicate_id_rejected_even_in_dlq(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    t = task()
    await backend.enqueue(t)
    with pytest.raises(DurableTaskExistsError):
        await backend.enqueue(t)
    [lease] = await backend.dequeue(1, 5)
    await backend.fail(lease, "x")
    with pytest.raises(DurableTaskExistsError):
        await backend.enqueue(t)


async def test_enqueue_many_stores_the_rest_and_names_duplicates(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    dup = task()
    await backend.enqueue(dup)
    batch = [task(payload=b"%d" % i) for i in range(1200)]  # more than one script call
    with pytest.raises(DurableTaskExistsError, match=str(dup.id)):
        await backend.enqueue_many([*batch[:600], dup, *batch[600:]])
    leases = [*await backend.dequeue(2000, 5), *await backend.dequeue(2000, 5)]  # at most MAX_DEQUEUE per call
    assert len({lease.lease_id for lease in leases}) == 1201


async def test_enqueue_many_validates_everything_first(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    with pytest.raises(InvalidTaskError):
        await backend.enqueue_many([task(), task(payload=None)])  # type: ignore[arg-type]
    assert await backend.dequeue(10, 5) == []


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"id": None}, "id is required"), ({"handler": " "}, "handler"), ({"metadata": {"a": 1}}, "metadata")],
)
async def test_enqueue_bad_task(make_backend: MakeBackend, fields: dict[str, Any], match: str) -> None:
    backend = await make_backend()
    handler = fields.pop("handler", "h")
    with pytest.raises(InvalidTaskError, match=match):
        await backend.enqueue(task(handler, **fields))


# -- scheduling ------------------------------------------------------------------------------------


async def test_priority_then_weight_then_age(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    low = task(priority=5)
    heavy = task(priority=1, weight=3)
    light = task(priority=1, weight=1)
    light2 = task(priority=1, weight=1)
    for t in (low, light, heavy, light2):
        await backend.enqueue(t)
        await asyncio.sleep(0.002)  # distinct ready times: age order is defined
    leases = await backend.dequeue(4, 5)
    assert [le.task.id for le in leases] == [heavy.id, light.id, light2.id, low.id]


async def test_run_at_delays_delivery(make_backend: MakeBackend) -> None:
    from datetime import UTC, datetime, timedelta

    backend = await make_backend()
    await backend.enqueue(task(run_at=datetime.now(UTC) + timedelta(seconds=0.3)))
    assert await backend.dequeue(1, 5) == []
    started = time.monotonic()
    await backend.wait_for_work(5)  # wakes at the task's ready time, not after 5 s
    assert time.monotonic() - started < 4
    assert len(await until(lambda: backend.dequeue(1, 5))) == 1


async def test_weights_share_every_poll(make_backend: MakeBackend) -> None:
    backend = await make_backend(queue_weights={"a": 3, "b": 1})
    await backend.enqueue_many([task(queue=q) for q in ("a", "b") for _ in range(40)])
    order = [(await backend.dequeue(1, 5))[0].task.queue for _ in range(16)]  # one task per poll
    assert order.count("a") == 12
    assert order.count("b") == 4
    assert "bb" not in "".join(order)  # smooth: never two b in a row at 3:1
    batch = await backend.dequeue(8, 5)  # and inside one batch
    assert [le.task.queue for le in batch].count("a") == 6


async def test_configure_queues_overrides_default_and_weights(make_backend: MakeBackend) -> None:
    backend = await make_backend(queue_weights={"a": 1})
    backend.configure_queues("main", {"b": 2})
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 5)
    assert lease.task.queue == "main"


async def test_global_pause_and_paused_queues(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    keys = Keys.for_prefix(prefix)
    backend = await make_backend()
    await backend.enqueue_many([task(queue="a"), task(queue="b")])
    await raw.set(keys.paused, "1")
    assert await backend.dequeue(5, 5) == []
    await raw.delete(keys.paused)
    await raw.sadd(keys.paused_queues, "a")
    assert [le.task.queue for le in await backend.dequeue(5, 5)] == ["b"]
    await raw.srem(keys.paused_queues, "a")
    assert [le.task.queue for le in await backend.dequeue(5, 5)] == ["a"]


async def test_expired_leases_of_paused_queues_are_requeued(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    keys = Keys.for_prefix(prefix)
    backend = await make_backend()
    t = task(queue="a")
    await backend.enqueue(t)
    await backend.dequeue(1, 0.05)
    await raw.sadd(keys.paused_queues, "a")
    await asyncio.sleep(0.1)
    assert await backend.dequeue(1, 5) == []
    assert await raw.zscore(keys.ready("a"), str(t.id)) is not None
    assert await raw.zcard(keys.processing("a")) == 0


async def test_orphans_are_cleaned_and_never_stall_a_queue(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    keys = Keys.for_prefix(prefix)
    backend = await make_backend(batch_size=10)
    # 60 orphans (ids without a hash, and go-worker's stub hashes) ahead of a real task: > the scan window.
    now = int(time.time() * 1000) - 10_000
    for i in range(60):
        await raw.zadd(keys.ready("default"), {f"orphan-{i:02}": now})
        if i % 2:
            await raw.hset(keys.task(f"orphan-{i:02}"), mapping={"updated_at_ms": now})
    real = task()
    await backend.enqueue(real)
    leases = await until(lambda: backend.dequeue(1, 5))
    assert leases[0].task.id == real.id
    assert await raw.zcard(keys.ready("default")) == 0
    assert await raw.exists(*(keys.task(f"orphan-{i:02}") for i in range(60))) == 0


async def test_task_with_non_uuid_id_goes_to_dlq(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    keys = Keys.for_prefix(prefix)
    backend = await make_backend()
    now = int(time.time() * 1000)
    await raw.hset(keys.task("not-a-uuid"), mapping={"handler": "h", "payload": b"", "priority": 1, "attempts": 0})
    await raw.zadd(keys.ready("default"), {"not-a-uuid": now})
    assert await backend.dequeue(1, 5) == []
    assert await raw.lrange(keys.dead, 0, -1) == [b"not-a-uuid"]
    assert b"not a UUID" in (await raw.hget(keys.task("not-a-uuid"), "last_error") or b"")


async def test_release_hands_back_without_counting(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    leases = await backend.dequeue(1, 30)
    await backend.release(leases)
    [again] = await backend.dequeue(1, 30)
    assert again.attempts == 1
    assert again.token != leases[0].token


# -- wake-up and batching --------------------------------------------------------------------------


async def test_idle_worker_wakes_on_enqueue(make_backend: MakeBackend) -> None:
    worker = await make_backend()
    producer = await make_backend()
    assert await worker.dequeue(1, 5) == []
    waiting = asyncio.create_task(worker.wait_for_work(30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await producer.enqueue(task())
    async with asyncio.timeout(10):  # far less than max_wait: the enqueue woke it
        await waiting
    assert len(await worker.dequeue(1, 5)) == 1


async def test_concurrent_acks_share_one_script_call(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    await backend.enqueue_many([task() for _ in range(100)])
    leases = await backend.dequeue(100, 30)
    assert len(leases) == 100

    async def evalsha_calls() -> int:
        stats = await raw.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    before = await evalsha_calls()
    await asyncio.gather(*(backend.ack(le) for le in leases))
    assert await evalsha_calls() - before <= 2  # one call (two if the first ack flushed alone)
    assert await backend.dequeue(100, 30) == []


async def test_follower_leaves_wake_up_tokens_to_the_leader(make_backend: MakeBackend, raw: Redis, prefix: str) -> None:
    leader = await make_backend(leader_lock=5.0)
    follower = await make_backend(leader_lock=5.0)
    assert await leader.is_leader()
    await leader.enqueue(task())
    await follower.wait_for_work(0.05)
    assert await raw.llen(Keys.for_prefix(prefix).wake) == 1  # still there for the leader
    await leader.wait_for_work(5)
    assert await raw.llen(Keys.for_prefix(prefix).wake) == 0


async def test_dropped_connections_are_reconnected_transparently(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    await raw.client_kill_filter(_type="normal", skipme=True)  # the server drops every other client
    [lease] = await backend.dequeue(1, 5)
    await raw.client_kill_filter(_type="normal", skipme=True)
    await backend.ack(lease)
    assert await backend.dequeue(1, 5) == []


async def test_queues_idle_for_15_minutes_are_forgotten_and_come_back_with_a_task(
    make_backend: MakeBackend, raw: Redis
) -> None:
    """go-worker never forgets a queue name and every dequeue walked them all: 10,000 queues used once made
    each later dequeue cost 91 ms of Redis time, and the caller sent every name back on each call."""
    backend = await make_backend()
    keys = backend.keys
    idle = keys.queues + ":idle"
    await backend.enqueue_many([task(queue=f"q{i}") for i in range(50)])
    await backend.enqueue(task(queue="held"))
    await raw.sadd(keys.paused_queues, "held")  # a paused queue is never forgotten, empty or not
    drained = 0
    while drained < 50:
        leases = await backend.dequeue(100, 30.0)
        for lease in leases:
            await backend.ack(lease)
        drained += len(leases)
    await backend.dequeue(10, 30.0)  # every drained queue is marked idle, still known
    assert await raw.hlen(idle) == 50
    assert await raw.scard(keys.queues) == 51  # q0..q49, held
    assert backend._wrr == {}  # the state sent back on each call holds busy queues only
    long_ago = int((time.time() - 16 * 60) * 1000)
    await raw.hset(idle, mapping={f"q{i}": long_ago for i in range(50)})
    await backend.dequeue(10, 30.0)
    assert await raw.smembers(keys.queues) == {b"held"}
    assert await raw.hlen(idle) == 0
    assert set(await raw.zrange(keys.queues_forgotten, 0, -1)) == {f"q{i}".encode() for i in range(50)}
    admin = RedisAdmin(raw, prefix=backend.keys.raw_prefix)  # not closed here: it shares the test's client
    await admin.pause_queue("q3")  # forgotten, not unknown: an idle queue can be paused before its next task
    with pytest.raises(ConfigurationError, match="unknown queue"):
        await admin.pause_queue("q-never-used")
    await backend.enqueue(task(queue="q3"))
    assert await backend.dequeue(10, 30.0) == []  # paused while it was forgotten: still paused
    await admin.resume_queue("q3")
    (held,) = await backend.dequeue(10, 30.0)
    await backend.ack(held)
    await backend.enqueue(task(queue="q7"))  # a task brings its queue back, unmarked
    assert b"q7" in await raw.smembers(keys.queues)
    (lease,) = await backend.dequeue(10, 30.0)
    assert lease.task.queue == "q7"
    assert not await raw.hexists(idle, "q7")  # leased: not empty, not marked


async def test_foreign_values_at_the_idle_and_forgotten_keys_never_stop_a_dequeue_an_enqueue_or_a_pause(
    make_backend: MakeBackend, raw: Redis
) -> None:
    backend = await make_backend()
    keys = backend.keys
    await raw.set(keys.queues + ":idle", "not a hash")  # another program's value at our additive keys
    await raw.set(keys.queues_forgotten, "not a sorted set")
    await backend.enqueue(task(queue="mail"))
    (lease,) = await backend.dequeue(10, 30.0)
    await backend.ack(lease)
    assert await backend.dequeue(10, 30.0) == []  # the drained queue can be neither marked nor forgotten: kept
    assert b"mail" in await raw.smembers(keys.queues)
    await raw.delete(keys.queues + ":idle")
    long_ago = int((time.time() - 16 * 60) * 1000)
    await raw.hset(keys.queues + ":idle", "mail", long_ago)
    assert await backend.dequeue(10, 30.0) == []  # forgotten: the memory of it cannot be kept, the dequeue goes on
    assert b"mail" not in await raw.smembers(keys.queues)
    admin = RedisAdmin(raw, prefix=keys.raw_prefix)  # shares the test's client: not closed here
    with pytest.raises(ConfigurationError, match="unknown queue"):
        await admin.pause_queue("mail")
    await backend.enqueue(task(queue="mail"))  # its next task brings it back, as ever
    await admin.pause_queue("mail")
    assert await raw.get(keys.queues_forgotten) == b"not a sorted set"  # never overwritten


async def test_a_foreign_value_at_the_node_list_never_fails_a_lease_renewal(
    make_backend: MakeBackend, raw: Redis
) -> None:
    """The heartbeat rides on the renewal call: before, a foreign value at P:nodes failed every renewal, after it
    had extended the leases, and the manager took them for lost."""
    backend = await make_backend()
    backend.register_node({"host": "h", "pid": 1}, lambda: 1)
    await raw.set(backend.keys.nodes, "not a sorted set")
    await backend.enqueue(task())
    (lease,) = await backend.dequeue(1, 5.0)
    assert await backend.extend_many([lease], 60.0) == [True]
    expiry = await raw.zscore(backend.keys.processing("default"), lease.lease_id)
    assert expiry is not None
    assert expiry > (time.time() + 50) * 1000  # renewed: a minute from now, not five seconds
    await backend.ack(lease)
    assert await raw.get(backend.keys.nodes) == b"not a sorted set"  # left as it was
