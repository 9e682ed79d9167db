"""Dead-letter retention (``dead_ttl``): the option's checks, the memory backend on a FakeClock, memory:// URLs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from worker_core.durable import DEAD_PRUNE_LIMIT, DEFAULT_DEAD_TTL, DurableTask, dead_ttl_from_text, dead_ttl_seconds
from worker_core.durable._plugin import memory_backend_from_url
from worker_core.errors import ConfigurationError
from worker_core.testing import FakeClock, InMemoryDurableBackend
from worker_core.testing import dead_letter_tasks as kill

LONG = 30.0
DAY = 86_400.0


def dead_ids(backend: InMemoryDurableBackend) -> list[str]:
    return [str(entry.task.id) for entry in backend.dead_letters()]


def test_the_default_is_seven_days_and_none_or_zero_keep_forever() -> None:
    assert DEFAULT_DEAD_TTL == 7 * DAY
    assert dead_ttl_seconds(None) is None
    assert dead_ttl_seconds(0) is None
    assert dead_ttl_seconds(3600) == 3600.0
    assert dead_ttl_seconds(timedelta(hours=1)) == 3600.0
    assert dead_ttl_from_text("0") is None
    assert dead_ttl_from_text("86400") == DAY


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "3600", [1]])
def test_a_bad_dead_ttl_is_a_configuration_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        dead_ttl_seconds(bad)
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        InMemoryDurableBackend(dead_ttl=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "abc", "-5", "inf", "nan", "1e400"])
def test_a_bad_dead_ttl_in_text_is_a_configuration_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        dead_ttl_from_text(bad)
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        memory_backend_from_url(f"memory://?dead_ttl={bad}")


async def test_dead_tasks_expire_on_the_fake_clock_at_the_next_dead_letter() -> None:
    clock = FakeClock()
    backend = InMemoryDurableBackend(clock, dead_ttl=DAY)
    old = await kill(backend, 2)
    clock.advance(DAY / 2)
    young = await kill(backend)
    clock.advance(DAY / 2 + 1)
    assert dead_ids(backend) == old + young  # expired, but nothing died since: kept until the next dead-letter
    latest = await kill(backend)
    assert dead_ids(backend) == young + latest
    assert all(backend.get(task_id) is None for task_id in old)  # the records are gone, not only the DLQ entries
    assert len(backend) == 2


async def test_the_delivery_limit_dead_letter_prunes_too() -> None:
    clock = FakeClock()
    backend = InMemoryDurableBackend(clock, dead_ttl=DAY, extra_deliveries=0)
    old = await kill(backend)
    clock.advance(DAY + 1)
    await backend.enqueue(DurableTask("h", None, b"p", id=uuid.uuid4(), retries=0))
    await backend.dequeue(1, 1.0)  # delivered once, never settled
    clock.advance(2)
    assert await backend.dequeue(1, LONG) == []  # the second delivery is past the limit: dead-lettered
    (entry,) = backend.dead_letters()
    assert entry.error.startswith("delivery limit")
    assert str(entry.task.id) not in old


async def test_dead_ttl_none_or_zero_keeps_every_dead_task() -> None:
    for dead_ttl in (None, 0):
        clock = FakeClock()
        backend = InMemoryDurableBackend(clock, dead_ttl=dead_ttl)
        old = await kill(backend, 3)
        clock.advance(365 * DAY)
        latest = await kill(backend)
        assert dead_ids(backend) == old + latest


async def test_one_dead_letter_prunes_at_most_the_bound_oldest_first() -> None:
    clock = FakeClock()
    backend = InMemoryDurableBackend(clock, dead_ttl=DAY)
    old = await kill(backend, DEAD_PRUNE_LIMIT + 5)
    clock.advance(DAY + 1)
    latest = await kill(backend)
    assert dead_ids(backend) == old[DEAD_PRUNE_LIMIT:] + latest


async def test_a_pruned_dead_task_leaves_its_idempotency_key_free() -> None:
    clock = FakeClock()
    backend = InMemoryDurableBackend(clock, dead_ttl=DAY)
    await kill(backend, idempotency_key="order-1")
    clock.advance(DAY + 1)
    await kill(backend)
    await backend.enqueue(DurableTask("h", None, b"p", id=uuid.uuid4(), idempotency_key="order-1"))
    assert backend.ready_count() == 1


def test_memory_url_takes_dead_ttl() -> None:
    assert memory_backend_from_url("memory://?dead_ttl=60")._store._dead_ttl == 60.0
    assert memory_backend_from_url("memory://?dead_ttl=0")._store._dead_ttl is None
    assert memory_backend_from_url("memory://")._store._dead_ttl == DEFAULT_DEAD_TTL
