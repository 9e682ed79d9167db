from __future__ import annotations

import asyncio
import uuid

import pytest
from worker_grpc import IdempotencyCache, IdempotencyConflictError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_first_claim_registers_and_the_next_reuses_the_id() -> None:
    cache = IdempotencyCache()
    claim = await cache.claim("k", b"sig")
    assert claim.task_id is None
    task_id = uuid.uuid4()
    claim.commit(task_id)
    again = await cache.claim("k", b"sig")
    assert again.task_id == task_id


async def test_same_key_for_another_task_is_a_conflict() -> None:
    cache = IdempotencyCache()
    (await cache.claim("k", b"a")).commit(uuid.uuid4())
    with pytest.raises(IdempotencyConflictError, match="already used for a different task"):
        await cache.claim("k", b"b")
    with pytest.raises(IdempotencyConflictError):
        cache.peek("k", b"b")


async def test_a_failed_registration_is_not_cached() -> None:
    cache = IdempotencyCache()
    (await cache.claim("k", b"a")).release()
    assert len(cache) == 0
    claim = await cache.claim("k", b"b")  # not even a conflict: nothing was remembered
    assert claim.task_id is None


async def test_concurrent_requests_with_the_same_key_wait_for_the_first() -> None:
    cache = IdempotencyCache()
    first = await cache.claim("k", b"a")
    waiter = asyncio.create_task(cache.claim("k", b"a"))
    await asyncio.sleep(0)
    assert not waiter.done()
    task_id = uuid.uuid4()
    first.commit(task_id)
    assert (await waiter).task_id == task_id


async def test_a_waiter_takes_over_when_the_first_request_fails() -> None:
    cache = IdempotencyCache()
    first = await cache.claim("k", b"a")
    waiter = asyncio.create_task(cache.claim("k", b"a"))
    await asyncio.sleep(0)
    first.release()
    second = await waiter
    assert second.task_id is None  # it owns the key now and registers the task itself


async def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = IdempotencyCache(ttl=60.0, clock=clock)
    (await cache.claim("k", b"a")).commit(uuid.uuid4())
    clock.now += 59.0
    assert cache.peek("k", b"a") is not None
    clock.now += 2.0
    assert cache.peek("k", b"a") is None
    assert (await cache.claim("k", b"other")).task_id is None


async def test_size_is_bounded_least_recently_used_first() -> None:
    cache = IdempotencyCache(max_entries=3)
    ids = {}
    for key in "abc":
        ids[key] = uuid.uuid4()
        (await cache.claim(key, b"s")).commit(ids[key])
    assert (await cache.claim("a", b"s")).task_id == ids["a"]  # "a" is now the most recent
    (await cache.claim("d", b"s")).commit(uuid.uuid4())
    assert len(cache) == 3
    assert cache.peek("b", b"s") is None  # evicted
    assert cache.peek("a", b"s") == ids["a"]


async def test_pending_entries_are_never_evicted() -> None:
    cache = IdempotencyCache(max_entries=1)
    pending = await cache.claim("p", b"s")
    (await cache.claim("x", b"s")).commit(uuid.uuid4())
    pending.commit(uuid.uuid4())
    assert len(cache) == 1
    assert cache.peek("p", b"s") is not None


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        IdempotencyCache(max_entries=0)
    with pytest.raises(ValueError, match="ttl"):
        IdempotencyCache(ttl=0)
