"""Helpers shared by the worker-redis tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from worker_core.durable.types import DurableTask
from worker_redis import RedisDurableBackend

MakeBackend = Callable[..., Awaitable[RedisDurableBackend]]
T = TypeVar("T")


def task(handler: str = "h", payload: bytes = b"p", **fields: Any) -> DurableTask:
    fields.setdefault("id", uuid.uuid4())
    return DurableTask(handler, payload=payload, **fields)


async def until(probe: Callable[[], Awaitable[T]], timeout: float = 10.0, every: float = 0.02) -> T:  # noqa: ASYNC109
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(every)


async def age_dead(backend: RedisDurableBackend, task_ids: Sequence[str], seconds: float) -> None:
    """Set the failure time of dead tasks back by ``seconds`` in their hashes (``failed_at_ms``)."""
    for task_id in task_ids:
        key = backend.keys.task(task_id)
        failed = int(await backend.client.hget(key, "failed_at_ms"))
        await backend.client.hset(key, "failed_at_ms", failed - int(seconds * 1000))
