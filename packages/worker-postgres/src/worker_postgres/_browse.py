"""Tasks by state, filtered and paged, newest first: the queries behind ``PostgresAdmin.browse_tasks``.

Each state is walked newest first through a partial index (schema version 2 adds or extends them): ``ready``
(due now) and ``delayed`` (due later) are ready rows by ``available_at``, ``processing`` leased rows by lease
expiry (also ``available_at``), ``dead`` by ``failed_at``; ties go to the later row (``seq``). The walk is keyset
pages of at most :data:`_CHUNK` keys in one ``REPEATABLE READ READ ONLY`` transaction (one snapshot, and one
``now()`` for ready versus delayed); ``queue`` and the time bounds are index ranges, ``handler`` is checked on the
keys read, at most ``BROWSE_SCAN_LIMIT`` keys are read, and only the page's rows are then read in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from psycopg import AsyncConnection, sql
from worker_core.admin import TaskRecord, TaskState
from worker_core.admin.browse import BROWSE_PAGE_LIMIT, BROWSE_SCAN_LIMIT, BROWSE_STATES, TaskPage
from worker_core.durable.types import lease_holder
from worker_core.errors import ConfigurationError

__all__ = ("RECORD_COLUMNS", "BrowseQuery", "browse_query", "ms", "record")

_CHUNK: Final = 200  # keys one statement reads at most
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_STATES: Final = {
    "ready": ("state = 'ready' AND available_at <= now()", "available_at"),
    "delayed": ("state = 'ready' AND available_at > now()", "available_at"),
    "processing": ("state = 'leased'", "available_at"),
    "dead": ("state = 'dead'", "failed_at"),
}
_STATUS: Final = {"ready": TaskState.READY, "leased": TaskState.PROCESSING, "dead": TaskState.DEAD}

#: The columns :func:`record` reads, in order.
RECORD_COLUMNS: Final = """id::text, state, handler, queue, priority, weight, retries, retry_delay, attempts,
    extract(epoch FROM ready_at)::float8, extract(epoch FROM updated_at)::float8,
    CASE WHEN state = 'leased' THEN extract(epoch FROM available_at)::float8 END,
    extract(epoch FROM failed_at)::float8, last_error, metadata, octet_length(payload), error_type, traceback,
    CASE WHEN state <> 'dead' THEN extract(epoch FROM available_at)::float8 END, token"""


def ms(value: float | None) -> int:
    """Epoch seconds as whole ms (floored; ``None`` or 0: 0)."""
    return int(value * 1000) if value else 0


def record(row: tuple[Any, ...]) -> TaskRecord:
    """A task record from a row of :data:`RECORD_COLUMNS`; ``score`` is when a ready task is due or a lease ends."""
    (i, state, handler, queue, prio, weight, retries, delay, attempts, ready, updated, lease, failed, error) = row[:14]
    metadata, size, error_type, trace, score, token = row[14:]
    meta = metadata if isinstance(metadata, dict) else {}
    return TaskRecord(
        id=i,
        status=_STATUS.get(state, TaskState.UNKNOWN),
        handler=handler,
        queue=queue,
        priority=int(prio),
        weight=int(weight),
        retries=int(retries),
        retry_delay_ms=int(float(delay) * 1000),
        attempts=int(attempts),
        ready_at_ms=ms(ready),
        updated_at_ms=ms(updated),
        lease_at_ms=ms(lease),
        failed_at_ms=ms(failed),
        last_error=error,
        metadata={str(k): str(v) for k, v in meta.items()},
        payload_size=int(size),
        score=ms(score),
        error_type=error_type,
        error_traceback=trace,
        dead_reason=("delivery limit" if error.startswith("delivery limit") else "failed") if state == "dead" else "",
        leased_by=lease_holder(token or "") if state == "leased" else "",
    )


def browse_query(
    state: str, *, queue: str, handler: str, since_ms: int, until_ms: int, limit: int, offset: int
) -> BrowseQuery:
    """The checked query (``queue`` already normalised; empty: every queue).

    Raises:
        ConfigurationError: an unknown state, a limit outside 1..BROWSE_PAGE_LIMIT, a negative offset or bound.
    """
    if state not in BROWSE_STATES:
        raise ConfigurationError(f"state must be one of {', '.join(BROWSE_STATES)}, not {state!r}")
    if not 0 < limit <= BROWSE_PAGE_LIMIT:
        raise ConfigurationError(f"limit must be between 1 and {BROWSE_PAGE_LIMIT}, not {limit!r}")
    if offset < 0:
        raise ConfigurationError(f"offset must be >= 0, not {offset!r}")
    if since_ms < 0 or until_ms < 0:
        raise ConfigurationError("since_ms and until_ms must be >= 0")
    states, column = _STATES[state]
    where, args = [states], dict[str, Any]()
    if queue:
        where.append("queue = %(queue)s")
        args["queue"] = queue
    if since_ms:
        where.append(f"{column} >= %(since)s")
        args["since"] = _EPOCH + timedelta(milliseconds=since_ms)
    if until_ms:  # a time whose whole ms is until_ms is in, as records floor to ms
        where.append(f"{column} < %(until)s")
        args["until"] = _EPOCH + timedelta(milliseconds=until_ms + 1)
    return BrowseQuery(state, column, " AND ".join(where), args, handler.strip(), limit, offset)


@dataclass(frozen=True, slots=True)
class BrowseQuery:
    """One checked browse; :meth:`run` reads its page on an autocommit connection."""

    state: str
    column: str
    where: str
    args: dict[str, Any]
    handler: str
    limit: int
    offset: int

    def statements(self, schema: sql.Identifier) -> tuple[sql.Composed, sql.Composed]:
        """The first page's statement and a keyset page's (``%(at)s``, ``%(seq)s``: the last key read)."""
        col = self.column
        first = f"SELECT id, seq, {col}, handler FROM {{s}}.tasks WHERE {self.where}"
        after = f"{first} AND {col} <= %(at)s AND ({col} < %(at)s OR seq < %(seq)s)"  # the key bounds the range
        order = f" ORDER BY {col} DESC, seq DESC LIMIT %(want)s"
        return sql.SQL(first + order).format(s=schema), sql.SQL(after + order).format(s=schema)

    async def run(self, conn: AsyncConnection[Any], schema: sql.Identifier) -> TaskPage:
        """The page, read in one read-only snapshot."""
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            ids, scanned, truncated, has_more = await self._walk(conn, schema)
            fetch = sql.SQL("SELECT " + RECORD_COLUMNS + " FROM {s}.tasks WHERE id = ANY(%(ids)s)").format(s=schema)
            rows = await (await conn.execute(fetch, {"ids": ids})).fetchall()
        by_id = {row[0]: record(row) for row in rows}
        tasks = tuple(by_id[str(i)] for i in ids if str(i) in by_id)
        return TaskPage(tasks, self.state, self.offset, self.limit, scanned, truncated, has_more)

    async def _walk(self, conn: AsyncConnection[Any], schema: sql.Identifier) -> tuple[list[Any], int, bool, bool]:
        first, after = self.statements(schema)
        ids: list[Any] = []
        scanned = matched = 0
        key: dict[str, Any] | None = None
        while True:
            want = _CHUNK if self.handler else min(_CHUNK, self.offset + self.limit + 1 - matched)
            want = min(want, BROWSE_SCAN_LIMIT - scanned)
            if want <= 0:
                return ids, scanned, True, False
            params = {**self.args, **(key or {}), "want": want}
            chunk = await (await conn.execute(after if key else first, params)).fetchall()
            for task_id, _seq, _at, handler in chunk:
                scanned += 1
                if self.handler and handler != self.handler:
                    continue
                matched += 1
                if matched <= self.offset:
                    continue
                if len(ids) >= self.limit:
                    return ids, scanned, False, True
                ids.append(task_id)
            if len(chunk) < want:
                return ids, scanned, False, False
            key = {"at": chunk[-1][2], "seq": chunk[-1][1]}
