"""Moving tasks by id, as the admin does: make them ready again (replay, requeue) or delete them.

Each move is one statement over at most :data:`MAX_IDS` ids that clears the moved tasks' lease tokens, so a
worker still holding one can no longer settle it; ids that are not task ids (not UUIDs) are stored nowhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, final

from worker_core.admin import MoveResult
from worker_core.errors import ConfigurationError

__all__ = ("MAX_IDS", "Moves", "Rows", "as_uuid", "bounded")

#: Ids one move (replay, requeue, delete) or listing takes at most.
MAX_IDS: Final = 10_000

#: Runs a statement (``{s}``: the schema) with its parameters; its rows (none for a statement without).
Rows = Callable[[str, dict[str, Any] | None], Awaitable[list[tuple[Any, ...]]]]

_MAKE_READY: Final = """WITH known AS (INSERT INTO {s}.queues (name) SELECT %(queue)s WHERE %(queue)s::text IS NOT NULL
                              ON CONFLICT DO NOTHING),
               moved AS (UPDATE {s}.tasks t SET state = 'ready', token = NULL, queue = coalesce(%(queue)s, t.queue),
                   idempotency_key = CASE WHEN EXISTS (
                       SELECT 1 FROM {s}.tasks o WHERE o.idempotency_key = t.idempotency_key AND o.id <> t.id
                         AND (o.state <> 'dead' OR (o.id = ANY(%(ids)s) AND o.seq < t.seq))
                   ) THEN NULL ELSE t.idempotency_key END,
                   attempts = CASE WHEN %(reset)s THEN 0 ELSE t.attempts END,
                   available_at = clock_timestamp() + make_interval(secs => %(delay)s),
                   ready_at = clock_timestamp() + make_interval(secs => %(delay)s),
                   updated_at = clock_timestamp(), failed_at = NULL
               WHERE id = ANY(%(ids)s) AND """


@final
class Moves:
    """The moves of one schema, through the admin's statement runner ``rows``."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    async def make_ready(self, ids: Iterable[str], where: str, *, queue: str, delay: float, reset: bool) -> MoveResult:
        """Make the tasks ``ids`` matching ``where`` ready after ``delay`` s (in ``queue`` unless empty); fenced.

        A task takes its idempotency key back unless a live task holds it now (then it runs without one); the
        outcomes of the moved tasks' earlier runs are deleted, so a handle waits for the new ones.
        """
        wanted = bounded(ids)
        keys = [k for k in (as_uuid(i) for i in wanted) if k is not None]
        params = {"ids": keys, "queue": queue or None, "delay": delay, "reset": reset}
        moved = await self._rows(
            _MAKE_READY
            + where
            + """ RETURNING id),
               -- they run again: the outcomes of their earlier runs go, so a handle waits for the new ones
               forgotten AS (DELETE FROM {s}.outcomes WHERE id IN (SELECT id FROM moved))
               SELECT id::text FROM moved""",
            params,
        )
        return MoveResult(count=len(moved), missing=tuple(await self.missing(wanted)))

    async def delete(self, ids: Iterable[str], *, queue: str) -> MoveResult:
        """Delete these tasks (only from ``queue`` when given)."""
        wanted = bounded(ids)
        keys = [k for k in (as_uuid(i) for i in wanted) if k is not None]
        gone = await self._rows(
            """DELETE FROM {s}.tasks WHERE id = ANY(%(ids)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)
               RETURNING id::text""",
            {"ids": keys, "queue": queue.strip() or None},
        )
        deleted = {i for (i,) in gone}
        return MoveResult(count=len(deleted), missing=tuple(i for i in wanted if str(as_uuid(i)) not in deleted))

    async def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids among ``ids`` that have no stored task, in the order given."""
        wanted = bounded(ids)
        keys = [k for k in (as_uuid(i) for i in wanted) if k is not None]
        found = {str(i) for (i,) in await self._rows("SELECT id FROM {s}.tasks WHERE id = ANY(%(ids)s)", {"ids": keys})}
        return [i for i in wanted if str(as_uuid(i)) not in found]


def as_uuid(value: object) -> uuid.UUID | None:
    """``value`` (stripped) as a task id; ``None`` when it is not a UUID."""
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


def bounded(ids: Iterable[str]) -> list[str]:
    """The ids stripped, blanks dropped, duplicates dropped (order kept).

    Raises:
        ConfigurationError: more than :data:`MAX_IDS` of them.
    """
    out = list(dict.fromkeys(str(i).strip() for i in ids if str(i).strip()))
    if len(out) > MAX_IDS:
        raise ConfigurationError(f"at most {MAX_IDS} ids per call, got {len(out)}")
    return out
