"""Shared test helpers (not a conftest: mypy sees one module per package)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from worker_core import TaskManager


def manager(**overrides: Any) -> TaskManager:
    """go-worker's test parameters (4 workers, 10 tasks), rate limit off, fast retries."""
    options: dict[str, Any] = {
        "max_workers": 4,
        "max_tasks": 10,
        "tasks_per_second": None,
        "timeout": 30.0,
        "retry_delay": 0.01,
        "max_retries": 3,
    }
    options.update(overrides)
    return TaskManager(**options)


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``condition`` (for states no event reports) with a generous deadline."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the states polled here have no event
            await asyncio.sleep(0.005)
