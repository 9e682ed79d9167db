"""The dead-letter queue as the admin sees it: pages of it, one entry in detail, its size, replays.

A page is one statement, newest failure first, that also counts the matches (``count(*) OVER ()``); the count
is read on its own only for a page past the last match. A replay makes dead tasks ready again (``_moves.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final, final

from worker_core.admin import DLQEntry, DLQEntryDetail, DLQPage, MoveResult, TaskRecord, TaskState
from worker_core.errors import ConfigurationError, TaskNotFoundError

from ._browse import ms
from ._moves import MAX_IDS, Moves, Rows

__all__ = ("DLQ_PAGE_LIMIT", "DeadLetters", "detail")

#: Entries one DLQ page holds at most.
DLQ_PAGE_LIMIT: Final = 1000

# The dead tasks a page's filters match (``queue``/``handler`` exact, ``query`` a case-insensitive substring).
_MATCHES: Final = """WHERE state = 'dead'
                 AND (%(queue)s::text IS NULL OR queue = %(queue)s)
                 AND (%(handler)s::text IS NULL OR handler = %(handler)s)
                 AND (%(query)s::text IS NULL OR id::text ILIKE %(query)s OR queue ILIKE %(query)s
                      OR handler ILIKE %(query)s OR last_error ILIKE %(query)s)"""


@final
class DeadLetters:
    """The DLQ of one schema, through the admin's statement runner ``rows``; replays go through ``moves``."""

    def __init__(self, rows: Rows, moves: Moves) -> None:
        self._rows = rows
        self._moves = moves

    async def size(self) -> int:
        """How many tasks are dead-lettered."""
        [(count,)] = await self._rows("SELECT count(*) FROM {s}.tasks WHERE state = 'dead'", None)
        return int(count)

    async def page(self, *, limit: int, offset: int, queue: str, handler: str, query: str) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` exact, ``query`` a case-insensitive substring."""
        limit = 100 if limit <= 0 else limit
        if limit > DLQ_PAGE_LIMIT:
            raise ConfigurationError(f"limit must be <= {DLQ_PAGE_LIMIT}")
        if offset < 0:
            raise ConfigurationError("offset must be >= 0")
        params = {
            "queue": queue.strip() or None,
            "handler": handler.strip() or None,
            "query": f"%{query.strip()}%" if query.strip() else None,
            "limit": limit,
            "offset": offset,
        }
        found = await self._rows(
            """SELECT id::text, queue, handler, attempts, last_error,
                   extract(epoch FROM clock_timestamp() - failed_at)::float8, count(*) OVER ()
               FROM {s}.tasks
               """
            + _MATCHES
            + """
               ORDER BY failed_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s""",
            params,
        )
        entries = tuple(
            DLQEntry(id=i, queue=q, handler=h, attempts=int(a), age_ms=ms(max(age or 0.0, 0.0)), last_error=e)
            for i, q, h, a, e, age, _ in found
        )
        total = int(found[0][6]) if found else (await self._count(params) if offset else 0)
        return DLQPage(entries=entries, total=total, offset=offset, limit=limit, scanned=total, truncated=False)

    async def _count(self, params: dict[str, Any]) -> int:
        [(count,)] = await self._rows("SELECT count(*) FROM {s}.tasks " + _MATCHES, params)
        return int(count)

    async def replay(self, limit: int, *, reset_attempts: bool) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again, oldest first (``limit=0``: all, at most MAX_IDS)."""
        found = await self._rows(
            "SELECT id::text FROM {s}.tasks WHERE state = 'dead' ORDER BY failed_at, seq LIMIT %(limit)s",
            {"limit": limit if limit > 0 else MAX_IDS},
        )
        return await self.replay_ids([i for (i,) in found], reset_attempts=reset_attempts)

    async def replay_ids(self, ids: Iterable[str], *, reset_attempts: bool) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``, live ones are left alone."""
        return await self._moves.make_ready(ids, "state = 'dead'", queue="", delay=0.0, reset=reset_attempts)


def detail(found: TaskRecord, task_id: str) -> DLQEntryDetail:
    """The DLQ entry of the task ``found`` (looked up as ``task_id``) in detail.

    Raises:
        TaskNotFoundError: the task is not dead-lettered.
    """
    if found.status is not TaskState.DEAD:
        raise TaskNotFoundError(f"task {task_id} is not in the dead-letter queue")
    entry = DLQEntry(
        id=found.id,
        queue=found.queue,
        handler=found.handler,
        attempts=found.attempts,
        age_ms=max(0, int(time.time() * 1000) - found.failed_at_ms),
        last_error=found.last_error,
    )
    return DLQEntryDetail(
        entry=entry,
        failed_at_ms=found.failed_at_ms,
        updated_at_ms=found.updated_at_ms,
        payload_size=found.payload_size,
        metadata=found.metadata,
        error_type=found.error_type,
        traceback=found.error_traceback,
    )
