"""Helpers shared by the worker-redis tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
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
