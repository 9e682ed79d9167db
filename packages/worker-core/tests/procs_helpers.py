"""Functions the process-pool tests run in pool processes (importable by name: the pool unpickles them)."""

from __future__ import annotations

import os
import time
from typing import Any


def pid() -> int:
    return os.getpid()


def square(n: int) -> int:
    return n * n


def die(code: int) -> None:
    os._exit(code)  # the pool process dies mid-task


def sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def unpicklable_result() -> Any:
    return lambda: None


def fails() -> None:
    raise KeyError("from the pool process")


def handler(ctx: Any, payload: Any) -> dict[str, Any]:
    """A plain durable handler: what it got, seen from inside the pool process."""
    return {"pid": os.getpid(), "ctx": type(ctx).__name__, "task_id": str(ctx.task_id), "n": payload["n"] * 2}
