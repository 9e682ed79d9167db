"""worker-core's DurableAdminConformance and TaskBrowserConformance suites: SqliteAdmin over a backend's file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from worker_core.admin import open_admin
from worker_core.testing import DurableAdminConformance, TaskBrowserConformance
from worker_sqlite import SqliteDurableBackend
from worker_sqlite.admin import SqliteAdmin


class TestSqliteAdminConformance(DurableAdminConformance, TaskBrowserConformance):
    @pytest.fixture
    async def backend(self, db_path: Path) -> AsyncIterator[SqliteDurableBackend]:
        backend = SqliteDurableBackend(db_path)
        await backend.connect()
        yield backend
        await backend.aclose()

    @pytest.fixture
    async def admin(self, backend: SqliteDurableBackend, db_path: Path) -> AsyncIterator[SqliteAdmin]:
        admin = open_admin(f"sqlite:///{db_path}")  # through the plugin, as workerctl opens it
        assert isinstance(admin, SqliteAdmin)
        async with admin:
            yield admin
