"""worker-core's DurableBackendConformance and ScheduleBackendConformance suites against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from redis.asyncio import Redis
from worker_core.testing import DurableBackendConformance, ScheduleBackendConformance
from worker_redis import RedisDurableBackend
from worker_redis.testing import RedisServer


class TestRedisConformance(DurableBackendConformance, ScheduleBackendConformance):
    @pytest.fixture
    async def backend(self, redis_srv: RedisServer, prefix: str) -> AsyncIterator[RedisDurableBackend]:
        backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
        await backend.connect()
        yield backend
        await backend.aclose()

    async def dead_letters(self, backend: Any) -> Mapping[str, str]:
        client: Redis = backend.client
        ids = [_text(raw) for raw in await client.lrange(backend.keys.dead, 0, -1)]
        errors = [await client.hget(backend.keys.task(task_id), "last_error") for task_id in ids]
        return {task_id: _text(error or b"") for task_id, error in zip(ids, errors, strict=True)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
