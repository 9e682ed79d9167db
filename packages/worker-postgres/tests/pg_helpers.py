"""Helpers shared by the worker-postgres tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from worker_core.durable.types import DurableTask
from worker_postgres import PostgresDurableBackend

T = TypeVar("T")


def task(handler: str = "h", payload: bytes = b"p", **fields: Any) -> DurableTask:
    fields.setdefault("id", uuid.uuid4())
    return DurableTask(handler, payload=payload, **fields)


async def until(probe: Callable[[], Awaitable[T]], timeout: float = 15.0, every: float = 0.02) -> T:  # noqa: ASYNC109
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(every)


async def rows(backend: PostgresDurableBackend, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``query`` (``{s}`` is the backend's schema) on one of the backend's connections."""
    async with backend._connection() as conn:
        cursor = await conn.execute(query.replace("{s}", f'"{backend.schema}"'), params)
        return list(await cursor.fetchall()) if cursor.description else []


async def states(backend: PostgresDurableBackend) -> dict[str, str]:
    """``{task id: state}`` of every stored task."""
    return {str(i): s for i, s in await rows(backend, "SELECT id, state FROM {s}.tasks")}


async def age_dead(backend: PostgresDurableBackend, task_ids: Sequence[str], seconds: float) -> None:
    """Set the failure time of dead tasks back by ``seconds`` (``failed_at``)."""
    await rows(
        backend,
        "UPDATE {s}.tasks SET failed_at = failed_at - make_interval(secs => %s) WHERE id = ANY(%s::uuid[])",
        seconds,
        list(task_ids),
    )
