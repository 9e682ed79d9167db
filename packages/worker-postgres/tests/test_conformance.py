from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from conftest import MakeBackend
from pg_helpers import age_dead
from worker_core.testing import DurableBackendConformance
from worker_postgres import PostgresDurableBackend


class TestPostgresConformance(DurableBackendConformance):
    """The whole durable contract against a real server (one schema per test)."""

    @pytest.fixture
    async def backend(self, make_backend: MakeBackend) -> PostgresDurableBackend:
        return await make_backend()

    async def dead_letters(self, backend: PostgresDurableBackend) -> Mapping[str, str]:
        async with backend._connection() as conn:
            cur = await conn.execute(
                f'SELECT id::text, last_error FROM "{backend.schema}".tasks WHERE state = %s', ("dead",)
            )
            return dict(await cur.fetchall())

    async def age_dead_letters(self, backend: PostgresDurableBackend, task_ids: Sequence[str], seconds: float) -> None:
        await age_dead(backend, task_ids, seconds)
