"""Tasks by state, filtered and paged, newest first: the queries behind ``SqliteAdmin.browse_tasks``.

Each state is walked newest first through a partial index (schema version 2 adds the ones keyed by queue):
``ready`` and ``delayed`` by ready-at time (due or not: a delayed row past its time is ready, promoted or not),
``processing`` by lease expiry, ``dead`` by failure time; ties go to the later row (``seq``). The walk is keyset
pages of at most :data:`_CHUNK` keys, inside one read transaction (one snapshot); ``queue`` and the time bounds
are index ranges, ``handler`` is checked on the keys read, and at most ``BROWSE_SCAN_LIMIT`` keys are read.
Only the page's rows are then read in full.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from worker_core.admin.browse import BROWSE_PAGE_LIMIT, BROWSE_SCAN_LIMIT, BROWSE_STATES, TaskPage
from worker_core.errors import ConfigurationError

from ._admin_sql import RECORD_COLUMNS, record
from ._ops import marks

__all__ = ("BrowseQuery", "browse_query", "payload_of")

_CHUNK: Final = 200  # keys one statement reads at most
# state -> (the rows' states, as the partial indexes spell them; the column the state's time is in)
_STATES: Final = {
    "ready": ("state IN ('ready', 'delayed')", "ready_at"),
    "delayed": ("state IN ('ready', 'delayed')", "ready_at"),
    "processing": ("state = 'leased'", "expires_at"),
    "dead": ("state = 'dead'", "failed_at"),
}


def browse_query(
    state: str, *, queue: str, handler: str, since_ms: int, until_ms: int, limit: int, offset: int, now: float
) -> BrowseQuery:
    """The checked query (``queue`` already resolved; empty: every queue).

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
    where, args = [states], list[Any]()
    if queue:
        where.append("queue = ?")
        args.append(queue)
    # One lower and one upper bound each (SQLite ranges an index by one of each): the tightest of the filters'.
    lows = [since_ms / 1000] if since_ms else []
    highs = [(until_ms + 1) / 1000] if until_ms else []  # a time whose whole ms is until_ms is in (ms() floors)
    if state == "delayed":
        lows.append(math.nextafter(now, math.inf))  # due later: > now
    elif state == "ready":
        highs.append(math.nextafter(now, math.inf))  # due: <= now
    if lows:
        where.append(f"{column} >= ?")
        args.append(max(lows))
    return BrowseQuery(
        state, column, " AND ".join(where), tuple(args), f" AND {column} < ?" if highs else "",
        (min(highs),) if highs else (), handler.strip(), limit, offset,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrowseQuery:
    """One checked browse; :meth:`run` reads its page on a connection (in the read thread)."""

    state: str
    column: str
    where: str
    args: tuple[Any, ...]
    upper: str  # the upper time bound, for the first page only (a keyset page's key is below it)
    upper_args: tuple[Any, ...]
    handler: str
    limit: int
    offset: int

    def run(self, db: sqlite3.Connection) -> TaskPage:
        """The page, read in one read transaction."""
        db.execute("BEGIN")
        try:
            seqs, scanned, truncated, has_more = self._walk(db)
            rows = db.execute(f"SELECT {RECORD_COLUMNS}, seq FROM tasks WHERE seq IN ({marks(seqs)})", seqs).fetchall()
        finally:
            db.execute("COMMIT")  # a read transaction: nothing to keep or undo
        by_seq = {row[-1]: record(row[:-1]) for row in rows}
        tasks = tuple(by_seq[s] for s in seqs if s in by_seq)
        return TaskPage(tasks, self.state, self.offset, self.limit, scanned, truncated, has_more)

    def _walk(self, db: sqlite3.Connection) -> tuple[list[int], int, bool, bool]:
        col = self.column
        base = f"SELECT seq, {col}, handler FROM tasks WHERE {self.where}"
        first = base + self.upper
        after = f"{base} AND {col} <= ? AND ({col} < ? OR seq < ?)"  # the key's time is the range's upper end
        order = f" ORDER BY {col} DESC, seq DESC LIMIT ?"
        seqs: list[int] = []
        scanned = matched = 0
        key: tuple[Any, Any] | None = None
        while True:
            want = _CHUNK if self.handler else min(_CHUNK, self.offset + self.limit + 1 - matched)
            want = min(want, BROWSE_SCAN_LIMIT - scanned)
            if want <= 0:
                return seqs, scanned, True, False
            if key is None:
                chunk = db.execute(first + order, (*self.args, *self.upper_args, want)).fetchall()
            else:
                chunk = db.execute(after + order, (*self.args, key[0], key[0], key[1], want)).fetchall()
            for seq, _at, handler in chunk:
                scanned += 1
                if self.handler and handler != self.handler:
                    continue
                matched += 1
                if matched <= self.offset:
                    continue
                if len(seqs) >= self.limit:
                    return seqs, scanned, False, True
                seqs.append(seq)
            if len(chunk) < want:
                return seqs, scanned, False, False
            key = (chunk[-1][1], chunk[-1][0])


def payload_of(db: sqlite3.Connection, task_id: str) -> bytes | None:
    """The payload bytes of ``task_id`` (``None``: no such task; a NULL payload is empty bytes)."""
    row = db.execute("SELECT payload FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        return None
    return bytes(row[0]) if isinstance(row[0], bytes | bytearray | memoryview) else b""
