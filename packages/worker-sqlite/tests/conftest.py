from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from worker_sqlite import SqliteDurableBackend

MakeBackend = Callable[..., Awaitable[SqliteDurableBackend]]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


@pytest.fixture
async def make_backend(db_path: Path) -> AsyncIterator[MakeBackend]:
    made: list[SqliteDurableBackend] = []

    async def make(**options: Any) -> SqliteDurableBackend:
        backend = SqliteDurableBackend(options.pop("path", db_path), **options)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
