from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend
from worker_core.testing.binaries import register_marker, require_binaries_for
from worker_redis import RedisDurableBackend
from worker_redis.testing import (
    REDIS_CLI,
    REDIS_SERVER,
    RedisClusterServers,
    RedisServer,
    redis_cluster,
    redis_server,
)


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test here runs a private redis-server; the cluster tests also need redis-cli (one message if not)."""
    cluster = any("cluster" in getattr(item, "fixturenames", ()) for item in session.items)
    require_binaries_for(session.items, REDIS_SERVER, *([REDIS_CLI] if cluster else []))


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture(scope="session")
def cluster() -> Iterator[RedisClusterServers]:
    """One private 3-master Redis Cluster shared by the cluster tests of every module."""
    with redis_cluster(3) as servers:
        yield servers


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def connected_backend(redis_srv: RedisServer, prefix: str) -> AsyncIterator[RedisDurableBackend]:
    """A connected backend on the private server under this test's prefix (the conformance suites' ``backend``)."""
    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    await backend.connect()
    yield backend
    await backend.aclose()


@pytest.fixture
async def raw(redis_srv: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_srv.url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_backend(redis_srv: RedisServer, prefix: str) -> AsyncIterator[MakeBackend]:
    made: list[RedisDurableBackend] = []

    async def make(**options: Any) -> RedisDurableBackend:
        options.setdefault("prefix", prefix)
        backend = RedisDurableBackend.from_url(redis_srv.url, **options)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
