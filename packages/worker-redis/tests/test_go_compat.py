"""Interoperability with go-worker (its Redis key layout): a task written by go-worker's enqueue script is run by our
TaskManager, and a task we enqueue has every field go-worker reads, in go-worker's formats, and is leased
and acked by go-worker's own dequeue and ack scripts (rebuilt here from the spec's description)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from google.protobuf.wrappers_pb2 import StringValue
from redis.asyncio import Redis
from redis_helpers import until
from worker_core import LeaseLostError, TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_redis import Keys, RedisDurableBackend
from worker_redis.testing import RedisServer

# go-worker's enqueue script, as go-worker runs it.
GO_ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'handler', ARGV[3], 'payload', ARGV[4], 'priority', ARGV[5], 'retries', ARGV[6],
  'retry_delay_ms', ARGV[7], 'metadata', ARGV[8], 'queue', ARGV[10], 'weight', ARGV[11], 'attempts', 0,
  'ready_at_ms', ARGV[2], 'updated_at_ms', ARGV[1])
redis.call('SADD', KEYS[3], ARGV[10])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[9])
return 1
"""

# go-worker's dequeue script: one task per call, 10 values back.
GO_DEQUEUE = """
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local at = tonumber(redis.call('HGET', KEYS[3] .. id, 'ready_at_ms')) or now
  redis.call('ZADD', KEYS[1], at, id)
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local best, bp, bw = nil, nil, nil
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', KEYS[3] .. id, 'priority', 'weight')
  if f[1] then
    local p, w = tonumber(f[1]), tonumber(f[2]) or 1
    if best == nil or p < bp or (p == bp and w > bw) then best, bp, bw = id, p, w end
  end
end
if not best then return {} end
local tk = KEYS[3] .. best
redis.call('ZREM', KEYS[1], best)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), best)
local attempts = redis.call('HINCRBY', tk, 'attempts', 1)
redis.call('HSET', tk, 'lease_at_ms', now + tonumber(ARGV[2]), 'updated_at_ms', now)
local f = redis.call('HMGET', tk, 'handler', 'payload', 'priority', 'retries', 'retry_delay_ms', 'metadata',
  'queue', 'weight')
return {best, f[1], f[2], f[3], f[4], f[5], attempts, f[6], f[7] or '', f[8] or ''}
"""

# go-worker's ack script.
GO_ACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

GO_FIELDS = {
    "handler",
    "payload",
    "priority",
    "queue",
    "weight",
    "retries",
    "retry_delay_ms",
    "attempts",
    "ready_at_ms",
    "updated_at_ms",
    "metadata",
}


async def go_enqueue(client: Redis, keys: Keys, task_id: str, payload: bytes, **fields: Any) -> None:
    now = int(time.time() * 1000)
    queue = fields.get("queue", "default")
    args = [
        now,
        now,
        fields.get("handler", "greet"),
        payload,
        fields.get("priority", 1),
        fields.get("retries", 0),
        fields.get("retry_delay_ms", 1000),
        fields.get("metadata", ""),
        task_id,
        queue,
        fields.get("weight", 1),
    ]
    script = client.register_script(GO_ENQUEUE)
    assert await script([keys.ready(queue), keys.task(task_id), keys.queues], args) == 1


@contextlib.asynccontextmanager
async def manager(url: str, prefix: str, fn: Any) -> AsyncIterator[TaskManager]:
    backend = RedisDurableBackend.from_url(url, prefix=prefix)
    tm = TaskManager(
        max_workers=4,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"greet": DurableHandlerSpec(StringValue, fn)},
        durable_lease=5.0,
    )
    try:
        async with tm:
            yield tm
    finally:
        await backend.aclose()


async def test_task_written_by_go_worker_runs_in_our_task_manager(
    redis_srv: RedisServer, raw: Redis, prefix: str
) -> None:
    keys = Keys.for_prefix(prefix)
    seen: list[tuple[str, int]] = []

    async def greet(ctx: TaskContext, payload: StringValue) -> str:
        seen.append((payload.value, ctx.attempt))
        return f"hello {payload.value}"

    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, task_id in enumerate(ids):
        payload = StringValue(value=f"go-{n}").SerializeToString()
        await go_enqueue(raw, keys, task_id, payload, metadata=json.dumps({"source": "go"}), priority=n + 1)
    async with manager(redis_srv.url, prefix, greet):
        await until(lambda: _all_gone(raw, [keys.task(i) for i in ids]))
    assert sorted(seen) == [("go-0", 1), ("go-1", 1), ("go-2", 1)]
    assert await raw.zcard(keys.ready("default")) == 0
    assert await raw.zcard(keys.processing("default")) == 0


async def _all_gone(raw: Redis, task_keys: list[str]) -> bool:
    return int(await raw.exists(*task_keys)) == 0


async def test_go_worker_task_that_fails_is_dead_lettered_with_its_error(
    redis_srv: RedisServer, raw: Redis, prefix: str
) -> None:
    keys = Keys.for_prefix(prefix)

    async def greet(ctx: TaskContext, payload: StringValue) -> str:
        raise RuntimeError(f"cannot greet {payload.value}")

    task_id = str(uuid.uuid4())
    await go_enqueue(raw, keys, task_id, StringValue(value="x").SerializeToString(), retries=0)
    async with manager(redis_srv.url, prefix, greet):
        await until(lambda: raw.lrange(keys.dead, 0, -1))
    assert await raw.lrange(keys.dead, 0, -1) == [task_id.encode()]
    assert b"cannot greet x" in (await raw.hget(keys.task(task_id), "last_error") or b"")
    assert await raw.hget(keys.task(task_id), "attempts") == b"1"


async def test_our_task_has_every_go_worker_field_and_go_worker_can_run_it(
    redis_srv: RedisServer, raw: Redis, prefix: str
) -> None:
    keys = Keys.for_prefix(prefix)

    async def greet(ctx: TaskContext, payload: StringValue) -> str:
        return payload.value

    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    tm = TaskManager(
        max_retries=3,
        durable_backend=backend,
        durable_handlers={"greet": DurableHandlerSpec(StringValue, greet)},
    )
    task = DurableTask("greet", StringValue(value="from python"), queue="mail", priority=2, weight=3, retries=2)
    task.retry_delay = 1.5
    task.metadata = {"team": "core"}
    task_id = await tm.register_durable_task(task)  # registering needs no started manager
    await backend.aclose()
    stored = cast("dict[bytes, bytes]", await raw.hgetall(keys.task(str(task_id))))
    record = {k.decode(): v for k, v in stored.items()}
    assert set(record) >= GO_FIELDS
    assert StringValue.FromString(record["payload"]).value == "from python"
    assert record["handler"] == b"greet"
    assert record["queue"] == b"mail"
    assert (int(record["priority"]), int(record["weight"]), int(record["retries"])) == (2, 3, 2)
    assert (int(record["retry_delay_ms"]), int(record["attempts"])) == (1500, 0)
    assert json.loads(record["metadata"]) == {"team": "core"}
    assert await raw.zscore(keys.ready("mail"), str(task_id)) == int(record["ready_at_ms"])
    assert await raw.sismember(keys.queues, "mail")

    # go-worker's own scripts lease and ack it.
    dequeue = raw.register_script(GO_DEQUEUE)
    now = int(time.time() * 1000)
    reply = await dequeue([keys.ready("mail"), keys.processing("mail"), keys.task_prefix], [now, 30_000, 50])
    assert reply[0] == str(task_id).encode()
    assert reply[1] == b"greet"
    assert StringValue.FromString(reply[2]).value == "from python"
    assert reply[6] == 1  # attempts
    assert json.loads(reply[7]) == {"team": "core"}
    ack = raw.register_script(GO_ACK)
    await ack([keys.processing("mail"), keys.task(str(task_id))], [str(task_id)])
    assert not await raw.exists(keys.task(str(task_id)))


async def test_stale_python_lease_is_fenced_after_a_go_worker_redelivery(
    redis_srv: RedisServer, raw: Redis, prefix: str
) -> None:
    keys = Keys.for_prefix(prefix)
    async with RedisDurableBackend.from_url(redis_srv.url, prefix=prefix) as backend:
        task_id = str(uuid.uuid4())
        await go_enqueue(raw, keys, task_id, b"")
        [ours] = await backend.dequeue(1, 0.05)
        await asyncio.sleep(0.1)
        dequeue = raw.register_script(GO_DEQUEUE)
        reply = await dequeue(
            [keys.ready("default"), keys.processing("default"), keys.task_prefix], [int(time.time() * 1000), 30_000, 50]
        )
        assert reply[0] == task_id.encode()  # go-worker redelivered it (it does not touch lease_token)
        with pytest.raises(LeaseLostError):
            await backend.ack(ours)
        assert await raw.exists(keys.task(task_id))


async def test_a_go_worker_task_in_a_queue_marked_idle_is_leased_and_its_expired_go_lease_taken_back(
    redis_srv: RedisServer, raw: Redis, prefix: str
) -> None:
    """Drained queues are checked 500 at a time by key existence, not walked; go-worker's enqueue and dequeue
    clear no idle mark, so only the keys themselves can tell that such a queue has work again."""
    keys = Keys.for_prefix(prefix)
    idle = keys.queues + ":idle"
    n = 1_200  # three chunks
    async with RedisDurableBackend.from_url(redis_srv.url, prefix=prefix) as backend:
        tasks = [DurableTask("greet", payload=b"", id=uuid.uuid4(), queue=f"q{i}") for i in range(n)]
        await backend.enqueue_many(tasks)
        drained = 0
        while drained < n:
            leases = await backend.dequeue(500, 30.0)
            for lease in leases:
                await backend.ack(lease)
            drained += len(leases)
        assert await backend.dequeue(10, 30.0) == []  # marks every drained queue idle
        assert await raw.hlen(idle) == n

        waiting = str(uuid.uuid4())
        await go_enqueue(raw, keys, waiting, b"", queue="q700")
        assert await raw.hexists(idle, "q700")  # go-worker left the mark
        [lease] = await backend.dequeue(10, 30.0)
        assert (str(lease.task.id), lease.task.queue) == (waiting, "q700")
        assert not await raw.hexists(idle, "q700")  # it had work again: once drained, its 15 minutes start anew
        await backend.ack(lease)

        orphaned = str(uuid.uuid4())  # leased by a go-worker worker that died at once: its lease already expired
        await go_enqueue(raw, keys, orphaned, b"", queue="q900")
        go_dequeue = raw.register_script(GO_DEQUEUE)
        reply = await go_dequeue(
            [keys.ready("q900"), keys.processing("q900"), keys.task_prefix], [int(time.time() * 1000), 0, 50]
        )
        assert reply[0] == orphaned.encode()
        assert await raw.hexists(idle, "q900")
        assert not await raw.exists(keys.ready("q900"))
        [lease] = await backend.dequeue(10, 30.0)
        assert (str(lease.task.id), lease.attempts) == (orphaned, 2)
        assert not await raw.hexists(idle, "q900")
        await backend.ack(lease)

        assert await backend.dequeue(10, 30.0) == []
        kept = str(uuid.uuid4())
        await go_enqueue(raw, keys, kept, b"", queue="q5")
        long_ago = int((time.time() - 16 * 60) * 1000)
        await raw.hset(idle, mapping={f"q{i}": long_ago for i in range(n)})
        [lease] = await backend.dequeue(10, 30.0)  # every idle queue is forgotten but the one with a task
        assert str(lease.task.id) == kept
        assert not await raw.hexists(idle, "q5")
        names = cast("set[bytes]", await raw.smembers(keys.queues))
        assert b"q5" in names
        assert not any(name.startswith(b"q") for name in names - {b"q5"})
        assert await raw.zcard(keys.queues_forgotten) == n - 1
