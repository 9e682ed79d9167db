"""Dead-letter retention on SQLite: pruned rows are gone, outcomes stay, dead_ttl=None, the URL option."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from helpers import age_dead, rows, task
from worker_core.durable import DEFAULT_DEAD_TTL
from worker_core.errors import ConfigurationError
from worker_core.testing import dead_letter_tasks as kill
from worker_core.testing import failed_outcome
from worker_sqlite import SqliteDurableBackend
from worker_sqlite._url import parse_url

LONG = 30.0
DAY = 86_400.0
Make = Callable[..., Coroutine[Any, Any, SqliteDurableBackend]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[SqliteDurableBackend] = []

    async def build(**options: Any) -> SqliteDurableBackend:
        backend = SqliteDurableBackend(tmp_path / f"dead-{len(made)}.db", **options)
        await backend.connect()
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.aclose()


def dead_ids(backend: SqliteDurableBackend) -> list[str]:
    return [str(r[0]) for r in rows(Path(backend.path), "SELECT id FROM tasks WHERE state = 'dead' ORDER BY seq")]


def stored_ids(backend: SqliteDurableBackend) -> set[str]:
    return {str(r[0]) for r in rows(Path(backend.path), "SELECT id FROM tasks")}


async def test_pruned_dead_rows_are_deleted_their_key_freed_and_outcomes_kept(make: Make) -> None:
    backend = await make(dead_ttl=DAY)
    record = task(retries=0, idempotency_key="order-1")
    await backend.enqueue(record)
    (lease,) = await backend.dequeue(1, LONG)
    await backend.fail_with_outcome(lease, "boom", failed_outcome(lease), 3600)
    old = str(record.id)
    age_dead(Path(backend.path), [old], DAY + 60)
    (young,) = await kill(backend)
    assert dead_ids(backend) == [young]
    assert old not in stored_ids(backend)
    assert rows(Path(backend.path), "SELECT count(*) FROM outcomes WHERE id = ?", old) == [(1,)]
    await backend.enqueue(task(idempotency_key="order-1"))


async def test_the_delivery_limit_dead_letter_of_dequeue_prunes(make: Make) -> None:
    backend = await make(dead_ttl=DAY, extra_deliveries=0)
    old = await kill(backend, 2)
    age_dead(Path(backend.path), old, DAY + 60)
    stuck = task(retries=0)
    await backend.enqueue(stuck)
    await backend.dequeue(1, 0.001)  # delivered once, never settled
    _expire_leases(backend)
    assert await backend.dequeue(1, LONG) == []  # past the delivery limit: dead-lettered by the dequeue
    assert dead_ids(backend) == [str(stuck.id)]
    assert stored_ids(backend) == {str(stuck.id)}


@pytest.mark.parametrize("dead_ttl", [None, 0])
async def test_dead_ttl_none_or_zero_keeps_every_dead_task(make: Make, dead_ttl: float | None) -> None:
    backend = await make(dead_ttl=dead_ttl)
    old = await kill(backend, 3)
    age_dead(Path(backend.path), old, 365 * DAY)
    latest = await kill(backend)
    assert dead_ids(backend) == old + latest


def test_the_url_sets_dead_ttl(tmp_path: Path) -> None:
    assert parse_url("sqlite:///x.db?dead_ttl=3600").options == {"dead_ttl": 3600.0}
    assert parse_url("sqlite:///x.db?dead_ttl=0").options == {"dead_ttl": None}
    assert SqliteDurableBackend.from_url(f"sqlite:///{tmp_path}/a.db?dead_ttl=0")._leases._dead_ttl is None
    assert SqliteDurableBackend(tmp_path / "b.db")._leases._dead_ttl == DEFAULT_DEAD_TTL


@pytest.mark.parametrize("bad", ["", "abc", "-1", "inf", "nan"])
def test_a_bad_dead_ttl_in_the_url_is_a_configuration_error_naming_it(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        SqliteDurableBackend.from_url(f"sqlite:///x.db?dead_ttl={bad}")


@pytest.mark.parametrize("bad", [-1, float("nan"), True, "3600"])
def test_a_bad_dead_ttl_argument_is_a_configuration_error_naming_it(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="dead_ttl"):
        SqliteDurableBackend(tmp_path / "c.db", dead_ttl=bad)  # type: ignore[arg-type]


def _expire_leases(backend: SqliteDurableBackend) -> None:
    db = sqlite3.connect(backend.path, timeout=10)
    try:
        with db:
            db.execute("UPDATE tasks SET expires_at = 0 WHERE state = 'leased'")
    finally:
        db.close()
