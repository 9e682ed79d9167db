"""The dead-letter queue as the admin sees it: pages of it, one entry in detail, replays.

A page is one read, newest failure first; a replay is one write transaction that makes dead tasks ready again
(fenced: their lease token is cleared) and forgets the outcomes of their earlier runs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, final

from worker_core.admin import DLQEntryDetail, DLQPage, MoveResult, TaskRecord, TaskState
from worker_core.errors import ConfigurationError, TaskNotFoundError

from ._admin_sql import RECORD_COLUMNS, Moved, absent, clean_ids, entry, make_ready, record, run_move
from ._conn import Op
from ._summary import dead_count

__all__ = ("DLQ_PAGE_LIMIT", "DeadLetters", "detail")

#: Entries one DLQ page returns at most.
DLQ_PAGE_LIMIT: Final = 1000

Run = Callable[[Op], Awaitable[Any]]


@final
class DeadLetters:
    """The DLQ of one SQLite file.

    Args:
        write: runs an operation in the backend's write transaction.
        read: runs a query on the backend's read connection.
        queue: resolves a queue name (an empty one means the default queue).
    """

    def __init__(self, write: Run, read: Run, queue: Callable[[str], str]) -> None:
        self._write = write
        self._read = read
        self._queue = queue

    async def size(self) -> int:
        """How many tasks are dead-lettered."""
        count: int = await self._read(dead_count)
        return count

    async def page(self, *, limit: int, offset: int, queue: str, handler: str, query: str) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` match exactly, ``query`` is a substring."""
        if limit <= 0:
            limit = 100
        if limit > DLQ_PAGE_LIMIT:
            raise ConfigurationError(f"limit must be <= {DLQ_PAGE_LIMIT}")
        if offset < 0:
            raise ConfigurationError("offset must be >= 0")
        where, args = ["state = 'dead'"], list[Any]()
        if queue.strip():
            where.append("queue = ?")
            args.append(self._queue(queue))
        if handler.strip():
            where.append("handler = ?")
            args.append(handler.strip())
        needle = query.strip().lower()
        if needle:
            where.append("(instr(lower(id), ?) OR instr(lower(queue), ?) OR instr(lower(handler), ?))")
            args += [needle, needle, needle]
        clause = " AND ".join(where)
        sql = f"SELECT {RECORD_COLUMNS} FROM tasks WHERE {clause} ORDER BY failed_at DESC, seq DESC LIMIT ? OFFSET ?"

        def op(db: sqlite3.Connection) -> tuple[list[Any], int]:
            total = dead_count(db)
            return db.execute(sql, (*args, limit, offset)).fetchall(), total

        rows, total = await self._read(op)
        now = time.time_ns() // 1_000_000
        entries = tuple(entry(record(row), now) for row in rows)
        return DLQPage(entries, total, offset, limit, len(entries), False)

    async def replay(self, limit: int, *, reset_attempts: bool) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again (0: all), oldest failure first."""
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        bound = limit or -1

        def op(db: sqlite3.Connection) -> Moved:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM tasks WHERE state = 'dead' ORDER BY failed_at, seq LIMIT ?", (bound,)
                )
            ]
            return Moved(make_ready(db, ids, "state = 'dead'", time.time(), "", reset_attempts), ())

        return await run_move(self._write, op)

    async def replay_ids(self, ids: Iterable[str], *, reset_attempts: bool) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``."""
        todo = clean_ids(ids)

        def op(db: sqlite3.Connection) -> Moved:
            return Moved(make_ready(db, todo, "state = 'dead'", time.time(), "", reset_attempts), absent(db, todo))

        return await run_move(self._write, op)


def detail(found: TaskRecord) -> DLQEntryDetail:
    """The DLQ entry of the task ``found`` in detail.

    Raises:
        TaskNotFoundError: the task is not dead-lettered.
    """
    if found.status is not TaskState.DEAD:
        raise TaskNotFoundError(f"task {found.id} is not in the DLQ (status {found.status.value})")
    return DLQEntryDetail(
        entry=entry(found, time.time_ns() // 1_000_000),
        failed_at_ms=found.failed_at_ms,
        updated_at_ms=found.updated_at_ms,
        payload_size=found.payload_size,
        metadata=found.metadata,
        error_type=found.error_type,
        traceback=found.error_traceback,
    )
