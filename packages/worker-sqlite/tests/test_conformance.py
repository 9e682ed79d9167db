"""worker-core's DurableBackendConformance suite against a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import age_dead, rows
from worker_core.testing import DurableBackendConformance
from worker_sqlite import SqliteDurableBackend


class TestSqliteConformance(DurableBackendConformance):
    @pytest.fixture
    async def backend(self, tmp_path: Path) -> AsyncIterator[SqliteDurableBackend]:
        backend = SqliteDurableBackend(tmp_path / "conformance.db")
        await backend.connect()
        yield backend
        await backend.aclose()

    async def dead_letters(self, backend: Any) -> Mapping[str, str]:
        return await dead_letters(backend)

    async def age_dead_letters(self, backend: Any, task_ids: Sequence[str], seconds: float) -> None:
        age_dead(Path(backend.path), task_ids, seconds)


async def dead_letters(backend: SqliteDurableBackend) -> dict[str, str]:
    """``{task id: last error}`` of the DLQ, read straight from the file."""
    found = rows(Path(backend.path), "SELECT id, last_error FROM tasks WHERE state = 'dead' ORDER BY failed_at")
    return {str(task_id): str(error) for task_id, error in found}
