from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from worker_core.testing.binaries import register_marker, require_binaries_for
from worker_postgres import PostgresDurableBackend
from worker_postgres.testing import INITDB, PG_CTL, PostgresServer, postgres_server

MakeBackend = Callable[..., Awaitable[PostgresDurableBackend]]


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The tests run a private PostgreSQL server: without initdb and pg_ctl, one message says how to install them."""
    require_binaries_for(session.items, INITDB, PG_CTL)


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole run (each test gets its own schema)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_url(pg: PostgresServer, schema: str) -> str:
    return f"{pg.url}?schema={schema}"


@pytest.fixture
async def make_backend(pg: PostgresServer, schema: str) -> AsyncIterator[MakeBackend]:
    """Backends over this test's schema (migrated by the first one made); all closed at the end."""
    made: list[PostgresDurableBackend] = []

    async def make(**options: Any) -> PostgresDurableBackend:
        options.setdefault("schema", schema)
        options.setdefault("pool_max", 4)
        backend = PostgresDurableBackend.from_url(pg.url, **options)
        made.append(backend)
        await backend.migrate()
        return backend

    yield make
    for backend in made:
        await backend.aclose()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> PostgresDurableBackend:
    return await make_backend()
