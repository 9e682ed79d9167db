from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import MakeBackend
from worker_core.testing import DurableAdminConformance, TaskBrowserConformance
from worker_postgres import PostgresAdmin, PostgresDurableBackend


class TestPostgresAdminConformance(DurableAdminConformance, TaskBrowserConformance):
    """worker-core's admin and task browser contracts, the admin and the backend over one schema."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> PostgresDurableBackend:
        return await make_backend()

    @pytest.fixture
    async def admin(self, backend: PostgresDurableBackend, pg_url: str) -> AsyncIterator[PostgresAdmin]:
        async with PostgresAdmin.from_url(pg_url) as admin:
            yield admin
