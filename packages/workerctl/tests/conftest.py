"""Fixtures: a private redis-server per test module, a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from ctl_helpers import Ctl
from worker_core.testing.binaries import register_marker, require_binaries_for
from worker_redis.testing import REDIS_SERVER, RedisServer, redis_server


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every command is tested against a private redis-server: one message when it is not installed."""
    require_binaries_for(session.items, REDIS_SERVER)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
def ctl(server: RedisServer) -> Iterator[Ctl]:
    client = redis.Redis.from_url(server.url)
    try:
        yield Ctl(url=server.url, prefix=f"ctl-{uuid.uuid4().hex[:8]}", r=client)
    finally:
        client.close()
