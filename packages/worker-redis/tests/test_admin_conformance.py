"""worker-core's DurableAdminConformance and TaskBrowserConformance suites: RedisAdmin over a backend's store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from worker_core.admin import open_admin
from worker_core.testing import DurableAdminConformance, TaskBrowserConformance
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin
from worker_redis.testing import RedisServer


class TestRedisAdminConformance(DurableAdminConformance, TaskBrowserConformance):
    @pytest.fixture
    def backend(self, connected_backend: RedisDurableBackend) -> RedisDurableBackend:
        return connected_backend

    @pytest.fixture
    async def admin(self, redis_srv: RedisServer, prefix: str) -> AsyncIterator[RedisAdmin]:
        admin = open_admin(f"{redis_srv.url}?prefix={prefix}")  # through the plugin, as workerctl opens it
        assert isinstance(admin, RedisAdmin)
        async with admin:
            yield admin
