"""Dead-letter retention on PostgreSQL: pruned rows are gone, outcomes stay, dead_ttl=None, the URL option."""

from __future__ import annotations

import pytest
from conftest import MakeBackend
from pg_helpers import age_dead, rows, task
from worker_core.durable import DEFAULT_DEAD_TTL
from worker_core.errors import ConfigurationError
from worker_core.testing import dead_letter_tasks as kill
from worker_core.testing import failed_outcome
from worker_postgres import PostgresDurableBackend
from worker_postgres._connect import parse_url

LONG = 30.0
DAY = 86_400.0


async def dead_ids(backend: PostgresDurableBackend) -> list[str]:
    return [str(r[0]) for r in await rows(backend, "SELECT id FROM {s}.tasks WHERE state = 'dead' ORDER BY seq")]


async def stored_ids(backend: PostgresDurableBackend) -> set[str]:
    return {str(r[0]) for r in await rows(backend, "SELECT id FROM {s}.tasks")}


async def test_pruned_dead_rows_are_deleted_their_key_freed_and_outcomes_kept(make_backend: MakeBackend) -> None:
    backend = await make_backend(dead_ttl=DAY)
    record = task(retries=0, idempotency_key="order-1")
    await backend.enqueue(record)
    (lease,) = await backend.dequeue(1, LONG)
    await backend.fail_with_outcome(lease, "boom", failed_outcome(lease), 3600)
    old = str(record.id)
    await age_dead(backend, [old], DAY + 60)
    second = task(retries=0)
    await backend.enqueue(second)
    (lease,) = await backend.dequeue(1, LONG)
    await backend.fail_with_outcome(
        lease, "boom", failed_outcome(lease), 3600
    )  # the statement with an outcome prunes too
    assert await dead_ids(backend) == [str(second.id)]
    assert old not in await stored_ids(backend)
    assert await rows(backend, "SELECT count(*) FROM {s}.outcomes WHERE id = %s::uuid", old) == [(1,)]
    await backend.enqueue(task(idempotency_key="order-1"))


async def test_the_delivery_limit_dead_letter_of_the_claim_prunes(make_backend: MakeBackend) -> None:
    backend = await make_backend(dead_ttl=DAY, extra_deliveries=0)
    old = await kill(backend, 2)
    await age_dead(backend, old, DAY + 60)
    stuck = task(retries=0)
    await backend.enqueue(stuck)
    await backend.dequeue(1, LONG)  # delivered once, never settled
    await rows(backend, "UPDATE {s}.tasks SET available_at = now() - interval '1 s' WHERE state = 'leased'")
    assert await backend.dequeue(1, LONG) == []  # past the delivery limit: the claim dead-letters it
    assert await dead_ids(backend) == [str(stuck.id)]
    assert await stored_ids(backend) == {str(stuck.id)}


async def test_dead_tasks_younger_than_the_ttl_are_kept(make_backend: MakeBackend) -> None:
    backend = await make_backend(dead_ttl=DAY)
    old = await kill(backend, 2)
    await age_dead(backend, old, DAY - 60)
    await kill(backend)
    assert set(old) <= set(await dead_ids(backend))


@pytest.mark.parametrize("dead_ttl", [None, 0])
async def test_dead_ttl_none_or_zero_keeps_every_dead_task(make_backend: MakeBackend, dead_ttl: float | None) -> None:
    backend = await make_backend(dead_ttl=dead_ttl)
    old = await kill(backend, 3)
    await age_dead(backend, old, 365 * DAY)
    latest = await kill(backend)
    assert await dead_ids(backend) == old + latest


def test_the_url_sets_dead_ttl() -> None:
    assert parse_url("postgresql://h/db?dead_ttl=3600").backend == {"dead_ttl": 3600.0}
    assert parse_url("postgresql://h/db?dead_ttl=0").backend == {"dead_ttl": None}
    assert PostgresDurableBackend("postgresql://h/db")._prune == {"dead_ttl": DEFAULT_DEAD_TTL, "prune": 100}


@pytest.mark.parametrize("bad", ["", "abc", "-1", "inf", "nan"])
def test_a_bad_dead_ttl_in_the_url_is_a_configuration_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        PostgresDurableBackend.from_url(f"postgresql://h/db?dead_ttl={bad}")


@pytest.mark.parametrize("bad", [-1, float("nan"), True, "3600"])
def test_a_bad_dead_ttl_argument_is_a_configuration_error_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        PostgresDurableBackend("postgresql://h/db", dead_ttl=bad)  # type: ignore[arg-type]
