from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from worker_postgres import PostgresDurableBackend
from worker_postgres.testing import PostgresServer, find_bindir, postgres_server

MakeBackend = Callable[..., Awaitable[PostgresDurableBackend]]


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the whole run (each test gets its own schema)."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql): initdb and pg_ctl are needed")
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
