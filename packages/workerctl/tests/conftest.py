"""Fixtures: a private redis-server per test module, a fresh key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from ctl_helpers import Ctl
from worker_redis.testing import RedisServer, redis_server


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
