"""Batch enqueue: ``TaskManager.register_durable_tasks`` costs one script call per 500 tasks on Redis, and
``enqueue_many`` names every skipped task in ``DurableTaskExistsError.ids`` (within and across script calls)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, task, until
from worker_core import TaskContext, TaskManager
from worker_core.durable import BatchEnqueueBackend, DurableHandlerSpec, DurableTask
from worker_core.errors import DurableTaskExistsError, PartialEnqueueError
from worker_redis import RedisDurableBackend
from worker_redis.testing import RedisServer, redis_server


@pytest.fixture(scope="module")
def own_srv() -> Iterator[RedisServer]:
    """A server of this module's own, so that its command counters see no other test's traffic."""
    with redis_server() as srv:
        yield srv


@pytest.fixture
async def own_raw(own_srv: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_srv.url)
    yield client
    await client.aclose()


async def script_calls(client: Redis) -> tuple[int, int]:
    """``(EVALSHA, EVAL)`` calls the server has run so far (``INFO commandstats``)."""
    stats: dict[str, Any] = await client.info("commandstats")

    def calls(name: str) -> int:
        return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

    return calls("evalsha"), calls("eval")


async def test_register_durable_tasks_costs_one_script_call_per_500_tasks(own_srv: RedisServer, own_raw: Redis) -> None:
    backend = RedisDurableBackend.from_url(own_srv.url, prefix=f"t-{uuid.uuid4().hex[:10]}")
    assert isinstance(backend, BatchEnqueueBackend)
    ran: set[int] = set()

    async def work(ctx: TaskContext, payload: dict[str, int]) -> None:
        ran.add(payload["i"])

    async def all_ran() -> bool:
        return len(ran) == 1201

    tm = TaskManager(
        max_workers=16,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_poll_interval=0.01,
        durable_batch_size=100,
    )
    try:
        # Registered before start, so that no dequeue runs meanwhile; the first call connects and loads the script.
        await tm.register_durable_task(DurableTask("work", {"i": -1}))
        before = await script_calls(own_raw)
        tasks = [DurableTask("work", {"i": i}) for i in range(1200)]
        ids = await tm.register_durable_tasks(*tasks)
        after = await script_calls(own_raw)
        assert (after[0] - before[0], after[1] - before[1]) == (3, 0)  # 500 + 500 + 200, not 1,200
        assert ids == [t.id for t in tasks]
        assert tm.metrics().scheduled == 1201
        async with tm:
            await until(all_ran, timeout=30)
        assert ran == set(range(-1, 1200))
        assert await own_raw.exists(backend.keys.task(str(ids[0]))) == 0  # acked and deleted
    finally:
        await backend.aclose()


async def test_enqueue_many_names_every_duplicate_across_script_calls(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    old = task(payload=b"old")
    await backend.enqueue(old)
    batch = [task(payload=str(i).encode()) for i in range(1200)]
    batch[700] = task(payload=b"copy of 3", id=batch[3].id)  # repeats a task of the first script call
    batch[1100] = task(payload=b"copy of old", id=old.id)  # already stored
    batch[1101] = task(payload=b"copy of 1000", id=batch[1000].id)  # repeats one in the same script call
    with pytest.raises(DurableTaskExistsError) as raised:
        await backend.enqueue_many(batch)
    assert raised.value.ids == (batch[3].id, old.id, batch[1000].id)
    assert str(raised.value).startswith("3 durable task(s) already exist: ")
    assert await raw.hget(backend.keys.task(str(batch[3].id)), "payload") == b"3"  # the first copy won
    assert await raw.hget(backend.keys.task(str(old.id)), "payload") == b"old"
    assert await raw.zcard(backend.keys.ready("default")) == 1 + 1200 - 3


async def test_enqueue_many_that_runs_out_of_memory_reports_exactly_what_was_stored() -> None:
    """Each script call of 500 is all-or-nothing; a later one failing names the stored tasks, nothing else is."""
    with redis_server("--maxmemory-policy", "noeviction") as srv:
        client = Redis.from_url(srv.url)
        backend = RedisDurableBackend.from_url(srv.url, prefix="oom")
        try:
            used = int((await client.info("memory"))["used_memory"])
            # Room for the first call (about 1.1 MB) and not all three: Redis refuses a script that
            # would write once the memory is over the limit, before it wrote anything.
            await client.config_set("maxmemory", used + 1_700_000)
            batch = [task(payload=b"x" * 2000) for _ in range(1200)]
            with pytest.raises(PartialEnqueueError) as raised:
                await backend.enqueue_many(batch)
            stored = set(raised.value.stored)
            assert raised.value.unknown == ()
            assert 0 < len(stored) < len(batch)
            assert len(stored) % 500 == 0  # whole calls, never part of one
            ready: list[Any] = await client.zrange(backend.keys.ready("default"), 0, -1)
            in_redis = {uuid.UUID(bytes(i).decode()) for i in ready}
            assert in_redis == stored
            assert stored == {t.id for t in batch[: len(stored)]}
            assert "maxmemory" in str(raised.value)
        finally:
            await backend.aclose()
            await client.aclose()


async def test_a_re_sent_enqueue_or_ack_answers_as_the_first_run_did(make_backend: MakeBackend, raw: Redis) -> None:
    """A script call re-sent after a lost reply (same request id) is not run twice."""
    backend = await make_backend()
    p = backend.keys.prefix + ":"
    one = task()
    args: list[Any] = [p, 1, 64, "request-1", str(one.id), "default", 1, "h", b"p", 1, 0, 0, "", 1, ""]
    keys = (backend.keys.queues, backend.keys.wake)
    assert await backend._s.enqueue(keys, args) == [1]
    assert await backend._s.enqueue(keys, args) == [1]  # not "already exists"
    assert await backend._s.enqueue(keys, [*args[:3], "request-2", *args[4:]]) == [0]  # a new call: a duplicate
    [lease] = await backend.dequeue(1, 30)
    ack: list[Any] = [p, "ack-1", 100, lease.lease_id, "default", lease.token, lease.attempts, "", ""]
    assert await backend._s.ack((backend.keys.queues,), ack) == [1]
    assert await backend._s.ack((backend.keys.queues,), ack) == [1]  # not a false "lease lost"
    assert await raw.exists(backend.keys.task(str(one.id))) == 0


async def test_a_re_sent_nack_or_fail_recognises_its_own_effect(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    await backend.enqueue_many([task(), task()])
    first, second = await backend.dequeue(2, 30)
    await backend.nack(first, 60)
    await backend.nack(first, 60)  # its own nack already ran: no LeaseLostError
    await backend.fail(second, "boom")
    await backend.fail(second, "boom")
    assert await raw.lrange(backend.keys.dead, 0, -1) == [second.lease_id.encode()]
    assert await raw.zscore(backend.keys.ready("default"), first.lease_id) is not None
    assert await raw.zcard(backend.keys.processing("default")) == 0


async def test_a_re_sent_global_rate_call_takes_its_tokens_once(make_backend: MakeBackend) -> None:
    backend = await make_backend(global_rate_limit=(0.001, 5))
    keys = (backend.keys.global_rate,)
    args: list[Any] = [1_000, "0.001", 5, 3, 60_000, "rate-1"]
    assert await backend._s.global_rate(keys, args) == 3
    assert await backend._s.global_rate(keys, args) == 3  # the same call again: nothing more taken
    assert await backend._s.global_rate(keys, [*args[:5], "rate-2"]) == 2  # a new call: the 2 tokens left


async def test_a_dequeue_limit_in_the_thousands_is_cut_to_max_dequeue(make_backend: MakeBackend) -> None:
    """A huge ``limit`` leases at most MAX_DEQUEUE tasks per call (4,200 at once used to fail inside the script:
    Lua's unpack of the leased ids)."""
    from worker_redis.backend import MAX_DEQUEUE

    backend = await make_backend()
    await backend.enqueue_many([task() for _ in range(4200)])
    seen: set[str] = set()
    sizes = []
    while len(seen) < 4200:
        leases = await backend.dequeue(5000, 30)
        sizes.append(len(leases))
        seen.update(lease.lease_id for lease in leases)
    assert sizes == [MAX_DEQUEUE] * 4 + [200]
