"""worker-core's DurableBackendConformance and ScheduleBackendConformance suites against a real redis-server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import age_dead
from worker_core.testing import DurableBackendConformance, ScheduleBackendConformance
from worker_redis import RedisDurableBackend


class TestRedisConformance(DurableBackendConformance, ScheduleBackendConformance):
    @pytest.fixture
    def backend(self, connected_backend: RedisDurableBackend) -> RedisDurableBackend:
        return connected_backend

    async def dead_letters(self, backend: Any) -> Mapping[str, str]:
        client: Redis = backend.client
        ids = [_text(raw) for raw in await client.lrange(backend.keys.dead, 0, -1)]
        errors = [await client.hget(backend.keys.task(task_id), "last_error") for task_id in ids]
        return {task_id: _text(error or b"") for task_id, error in zip(ids, errors, strict=True)}

    async def age_dead_letters(self, backend: Any, task_ids: Sequence[str], seconds: float) -> None:
        await age_dead(backend, task_ids, seconds)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
