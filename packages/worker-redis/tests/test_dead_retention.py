"""Dead-letter retention on Redis: what a pruned dead task leaves behind, dead_ttl=None, the URL option."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, age_dead, task
from worker_core.durable import DEFAULT_DEAD_TTL
from worker_core.errors import ConfigurationError
from worker_core.testing import dead_letter_tasks as kill
from worker_redis import RedisDurableBackend
from worker_redis._connect import parse_url

LONG = 30.0
DAY = 86_400.0


async def dead_ids(backend: RedisDurableBackend) -> list[str]:
    return [raw.decode() for raw in await backend.client.lrange(backend.keys.dead, 0, -1)]


async def test_a_pruned_dead_task_loses_its_hash_and_idempotency_key_but_not_its_outcome(
    make_backend: MakeBackend, raw: Redis
) -> None:
    backend = await make_backend(dead_ttl=DAY)
    record = task(retries=0, idempotency_key="order-1")
    await backend.enqueue(record)
    (lease,) = await backend.dequeue(1, LONG)
    await backend.fail(lease, "boom")
    old = str(record.id)
    await raw.set(backend.keys.result(old), b"{}", px=3_600_000)  # an outcome: its own TTL, untouched
    assert await raw.exists(f"{backend.keys.prefix}:idem:order-1") == 1
    await age_dead(backend, [old], DAY + 60)
    (young,) = await kill(backend)
    assert await dead_ids(backend) == [young]
    assert await raw.exists(backend.keys.task(old)) == 0
    assert await raw.exists(f"{backend.keys.prefix}:idem:order-1") == 0
    assert await raw.get(backend.keys.result(old)) == b"{}"
    await backend.enqueue(task(idempotency_key="order-1"))  # the key is free


async def test_the_delivery_limit_dead_letter_of_dequeue_prunes(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend(dead_ttl=DAY, extra_deliveries=0)
    old = await kill(backend, 2)
    await age_dead(backend, old, DAY + 60)
    stuck = task(retries=0)
    await backend.enqueue(stuck)
    await backend.dequeue(1, 0.001)  # delivered once, never settled; the lease expires at once
    await raw.hset(backend.keys.task(str(stuck.id)), "attempts", 1)
    assert await backend.dequeue(1, LONG) == []  # the next delivery is past the limit: dead-lettered by the script
    assert await dead_ids(backend) == [str(stuck.id)]
    assert await raw.exists(*(backend.keys.task(i) for i in old)) == 0


async def test_a_live_task_left_in_the_dead_list_is_not_deleted(make_backend: MakeBackend, raw: Redis) -> None:
    """An id in P:dead whose task is ready again (a foreign requeue that kept the entry) leaves the list only."""
    backend = await make_backend(dead_ttl=DAY)
    (old,) = await kill(backend)
    await age_dead(backend, [old], DAY + 60)
    await raw.zadd(backend.keys.ready("default"), {old: 2**52})  # ready, in the far future
    await kill(backend)
    assert old not in await dead_ids(backend)
    assert await raw.exists(backend.keys.task(old)) == 1


async def test_a_dead_task_without_a_failure_time_is_kept_and_does_not_block(
    make_backend: MakeBackend, raw: Redis
) -> None:
    backend = await make_backend(dead_ttl=DAY)
    odd, old = await kill(backend, 2)
    await raw.hdel(backend.keys.task(odd), "failed_at_ms", "updated_at_ms")
    await age_dead(backend, [old], DAY + 60)
    (young,) = await kill(backend)
    assert await dead_ids(backend) == [odd, young]


@pytest.mark.parametrize("dead_ttl", [None, 0])
async def test_dead_ttl_none_or_zero_keeps_every_dead_task(make_backend: MakeBackend, dead_ttl: float | None) -> None:
    backend = await make_backend(dead_ttl=dead_ttl)
    old = await kill(backend, 3)
    await age_dead(backend, old, 365 * DAY)
    (young,) = await kill(backend)
    assert await dead_ids(backend) == [young, *reversed(old)]


async def test_the_url_sets_dead_ttl(make_backend: MakeBackend) -> None:
    assert parse_url("redis://h/0?dead_ttl=3600").backend == {"dead_ttl": 3600.0}
    assert parse_url("redis://h/0?dead_ttl=0").backend == {"dead_ttl": None}
    backend = await make_backend()
    assert backend._dead_args == (int(DEFAULT_DEAD_TTL * 1000), 100)


@pytest.mark.parametrize("bad", ["", "abc", "-1", "inf", "nan"])
def test_a_bad_dead_ttl_in_the_url_is_a_configuration_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        RedisDurableBackend.from_url(f"redis://localhost/0?dead_ttl={bad}")


@pytest.mark.parametrize("bad", [-1, float("nan"), True, "3600"])
def test_a_bad_dead_ttl_argument_is_a_configuration_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        RedisDurableBackend(object(), dead_ttl=bad)  # type: ignore[arg-type]
