"""Helpers shared by the worker-sqlite tests: tasks, polling and reading the file (worker processes: FaultFleet)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from worker_core.durable.types import DurableTask
from worker_core.testing.faults import wait_until

T = TypeVar("T")


def task(handler: str = "work", payload: bytes | None = b"1", **fields: Any) -> DurableTask:
    fields.setdefault("id", uuid.uuid4())
    return DurableTask(handler, payload=payload, **fields)


async def until(probe: Callable[[], Any], timeout: float = 20.0, every: float = 0.02) -> Any:  # noqa: ASYNC109
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    return await wait_until(probe, timeout, every=every)


def rows(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run a read query on the file with a connection of its own."""
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def age_dead(path: Path, task_ids: Sequence[str], seconds: float) -> None:
    """Set the failure time of dead tasks back by ``seconds``, in the file (a connection of its own)."""
    db = sqlite3.connect(path, timeout=10)
    try:
        with db:
            db.executemany(
                "UPDATE tasks SET failed_at = failed_at - ? WHERE id = ? AND state = 'dead'",
                [(seconds, task_id) for task_id in task_ids],
            )
    finally:
        db.close()
