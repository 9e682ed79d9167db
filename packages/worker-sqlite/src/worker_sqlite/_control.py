"""Pausing: the global flag (``settings`` row ``paused``) and each queue's (``queues.paused``), for backend and admin.

A pause takes effect at the next dequeue of every process on the file; lifting one wakes the idle workers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, final

from worker_core.admin import PauseState
from worker_core.errors import ConfigurationError

from . import _ops as ops
from ._conn import Op
from ._ops import Wake
from ._rows import queue_name

__all__ = ("QueueControl",)

Run = Callable[[Op], Awaitable[Any]]


@final
class QueueControl:
    """Sets and reads the pause flags of one SQLite file.

    Args:
        write: runs an operation in the backend's write transaction.
        read: runs a query on the backend's read connection.
        default_queue: the queue an empty queue name means.
    """

    def __init__(self, write: Run, read: Run, default_queue: Callable[[], str]) -> None:
        self._write = write
        self._read = read
        self._default_queue = default_queue

    async def set_paused(self, queue: str | None, paused: bool) -> None:
        """Set the global pause (``queue`` is ``None``) or one queue's, registering an unknown queue."""
        name = None if queue is None else queue_name(queue, self._default_queue())

        def op(db: sqlite3.Connection) -> Wake:
            _set_paused(db, name, paused)
            return Wake(work=not paused)

        await self._write(op)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue the file knows.

        Raises:
            ConfigurationError: an unknown queue (nothing changed).
        """
        name = queue_name(queue, self._default_queue())

        def op(db: sqlite3.Connection) -> Wake:
            known = db.execute("UPDATE queues SET paused = ? WHERE name = ?", (int(paused), name)).rowcount == 1
            return Wake(work=known and not paused, value=known)

        done: Wake = await self._write(op)
        if not done.value:
            raise ConfigurationError(f"unknown queue {name!r}")

    async def state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""

        def op(db: sqlite3.Connection) -> PauseState:
            names = [r[0] for r in db.execute("SELECT name FROM queues WHERE paused = 1 ORDER BY name")]
            return PauseState(ops.paused(db), tuple(names))

        state: PauseState = await self._read(op)
        return state


def _set_paused(db: sqlite3.Connection, queue: str | None, value: bool) -> None:
    if queue is None:
        db.execute(
            "INSERT INTO settings (name, value) VALUES ('paused', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            ("1" if value else "0",),
        )
    else:
        db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
        db.execute("UPDATE queues SET paused = ? WHERE name = ?", (int(value), queue))
