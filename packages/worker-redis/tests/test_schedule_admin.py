"""worker-core's ScheduleAdminConformance: RedisAdmin's schedules over the keys a backend (the nodes) writes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from worker_core.admin import open_admin
from worker_core.testing import ScheduleAdminConformance
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin
from worker_redis.testing import RedisServer


class TestRedisScheduleAdmin(ScheduleAdminConformance):
    @pytest.fixture
    def backend(self, connected_backend: RedisDurableBackend) -> RedisDurableBackend:
        return connected_backend

    @pytest.fixture
    async def admin(self, redis_srv: RedisServer, prefix: str) -> AsyncIterator[RedisAdmin]:
        admin = open_admin(f"{redis_srv.url}?prefix={prefix}")  # through the plugin, as workerctl opens it
        assert isinstance(admin, RedisAdmin)
        async with admin:
            yield admin
