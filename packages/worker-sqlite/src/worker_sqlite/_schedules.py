"""Schedule state in the SQLite file: the backend's ``ScheduleBackend`` part (worker_core.schedules).

Tables (schema version 2, ``_schema.py``): ``schedule_ticks`` (one marker row per (schedule, tick), primary key
``(schedule, tick_ms)``, with its expiry), ``schedules`` (the published records), ``schedule_state`` (pause flag
and last fired tick per schedule), ``schedule_runs`` (pending "run now" requests) and ``schedule_events`` (a
bounded list per schedule, newest by ``seq``).

A tick is one write transaction (``BEGIN IMMEDIATE``, so every process of the machine is serialised on it): prune
up to 100 expired markers, check the pause flag, insert the marker (or take over an expired one), insert the task,
raise the last tick, push an event. A marker that exists, or a task whose id exists, undoes the whole operation
and answers ``DUPLICATE``. Taking run requests reads first and writes only when some are pending.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, final

from worker_core.durable.types import DurableTask
from worker_core.schedules.types import (
    PUBLISHED_TTL_S,
    MissedPolicy,
    ScheduleEvent,
    ScheduleRecord,
    ScheduleState,
    TickResult,
)

from . import _ops as ops
from ._ops import Wake
from ._rows import task_row

__all__ = ("SCHEDULE_TABLES", "SqliteSchedules")

EVENT_LIMIT: Final = 100  # events the tick keeps per schedule
_EVENTS_CAP: Final = 1000  # most events kept per schedule, whatever limit a caller asks for
_PRUNE: Final = 100  # expired markers one tick deletes at most

#: The statements of the schema migration that adds these tables (idempotent).
SCHEDULE_TABLES: Final = (
    """CREATE TABLE IF NOT EXISTS schedule_ticks (
        schedule TEXT NOT NULL,
        tick_ms INTEGER NOT NULL,
        task_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (schedule, tick_ms)
    )""",
    "CREATE INDEX IF NOT EXISTS schedule_ticks_expiry ON schedule_ticks (expires_at)",
    """CREATE TABLE IF NOT EXISTS schedules (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        tz TEXT NOT NULL,
        queue TEXT NOT NULL,
        missed TEXT NOT NULL,
        published_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS schedule_state (
        name TEXT PRIMARY KEY,
        paused INTEGER NOT NULL DEFAULT 0,
        last_tick_ms INTEGER
    )""",
    "CREATE TABLE IF NOT EXISTS schedule_runs (name TEXT PRIMARY KEY, requested_at REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS schedule_events (
        seq INTEGER PRIMARY KEY,
        schedule TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS schedule_events_recent ON schedule_events (schedule, seq)",
)

_MARKER: Final = (
    "INSERT INTO schedule_ticks (schedule, tick_ms, task_id, expires_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (schedule, tick_ms) DO UPDATE SET task_id = excluded.task_id, expires_at = excluded.expires_at "
    "WHERE schedule_ticks.expires_at <= ?"
)


class _Duplicate(Exception):
    """Raised inside the tick's operation to undo its statements (the writer's savepoint) when the task exists."""


def _event(raw: object) -> ScheduleEvent | None:
    try:
        return ScheduleEvent.from_json(json.loads(str(raw)))
    except (ValueError, TypeError):
        return None  # a corrupt row is skipped, never raised


def _push(db: sqlite3.Connection, event: ScheduleEvent, limit: int) -> None:
    data = json.dumps(event.to_json(), separators=(",", ":"))
    db.execute("INSERT INTO schedule_events (schedule, data) VALUES (?, ?)", (event.schedule, data))
    keep = min(max(1, int(limit)), _EVENTS_CAP)
    db.execute(
        "DELETE FROM schedule_events WHERE schedule = ? AND seq <= "
        "(SELECT seq FROM schedule_events WHERE schedule = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (event.schedule, event.schedule, keep),
    )


@final
class SqliteSchedules:
    """Markers, state, run requests and events of the schedules of one SQLite file.

    Args:
        write: runs an operation in the backend's write transaction.
        read: runs a query on the backend's read connection.
        default_queue: the queue of a task that names none.
    """

    def __init__(
        self,
        write: Callable[[Callable[[Any], Any]], Awaitable[Any]],
        read: Callable[[Callable[[Any], Any]], Awaitable[Any]],
        default_queue: Callable[[], str],
    ) -> None:
        self._write = write
        self._read = read
        self._default_queue = default_queue

    async def enqueue_tick(self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str) -> TickResult:
        """See :meth:`worker_core.schedules.ScheduleBackend.enqueue_tick` (one write transaction)."""
        now = time.time()
        row = task_row(task, self._default_queue(), now)  # InvalidTaskError before anything is written
        tick = int(tick_ms)
        ttl_s = max(float(ttl), 0.001)
        event = ScheduleEvent(schedule, "enqueued", int(now * 1000), tick, row[0], node)

        def op(db: sqlite3.Connection) -> Wake:
            at = time.time()
            db.execute(
                "DELETE FROM schedule_ticks WHERE rowid IN "
                "(SELECT rowid FROM schedule_ticks WHERE expires_at <= ? LIMIT ?)",
                (at, _PRUNE),
            )
            paused = db.execute("SELECT paused FROM schedule_state WHERE name = ?", (schedule,)).fetchone()
            if paused is not None and paused[0]:
                return Wake(value=TickResult.PAUSED)
            if db.execute(_MARKER, (schedule, tick, row[0], at + ttl_s, at)).rowcount != 1:
                return Wake(value=TickResult.DUPLICATE)
            if ops.enqueue_rows(db, [row]):
                raise _Duplicate  # the task id (or its idempotency key) is held: undo the marker too
            db.execute(
                "INSERT INTO schedule_state (name, last_tick_ms) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                "last_tick_ms = max(coalesce(schedule_state.last_tick_ms, excluded.last_tick_ms), "
                "excluded.last_tick_ms)",
                (schedule, tick),
            )
            _push(db, event, EVENT_LIMIT)
            return Wake(work=True, value=TickResult.ENQUEUED)

        try:
            done: Wake = await self._write(op)
        except _Duplicate:
            return TickResult.DUPLICATE
        result: TickResult = done.value
        return result

    async def publish(self, records: Sequence[ScheduleRecord]) -> None:
        """Upsert one row per record (the latest publication of a name wins), stamped now; delete expired rows."""
        now = time.time()
        rows = [(r.name, r.spec, r.tz, r.queue, r.missed, now) for r in records]

        def op(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO schedules (name, spec, tz, queue, missed, published_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, tz = excluded.tz, queue = excluded.queue, "
                "missed = excluded.missed, published_at = excluded.published_at",
                rows,
            )
            db.execute("DELETE FROM schedules WHERE published_at < ?", (now - PUBLISHED_TTL_S,))

        await self._write(op)

    async def listed(self) -> list[ScheduleRecord]:
        """Every record published within the TTL, by name (a row that does not read back is skipped)."""
        cutoff = time.time() - PUBLISHED_TTL_S

        def op(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            sql = "SELECT name, spec, tz, queue, missed FROM schedules WHERE published_at >= ? ORDER BY name"
            return db.execute(sql, (cutoff,)).fetchall()

        out: list[ScheduleRecord] = []
        for name, spec, tz, queue, missed in await self._read(op):
            if not all(isinstance(v, str) for v in (name, spec, tz, queue)):
                continue
            policy: MissedPolicy = "once" if missed == "once" else "skip"
            out.append(ScheduleRecord(name, spec, tz, queue, policy))
        return out

    async def states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and newest event of each of ``names`` (one read transaction)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}

        def op(db: sqlite3.Connection) -> dict[str, ScheduleState]:
            out: dict[str, ScheduleState] = {}
            db.execute("BEGIN")
            try:
                for name in wanted:
                    row = db.execute(
                        "SELECT paused, last_tick_ms FROM schedule_state WHERE name = ?", (name,)
                    ).fetchone()
                    raw = db.execute(
                        "SELECT data FROM schedule_events WHERE schedule = ? ORDER BY seq DESC LIMIT 1", (name,)
                    ).fetchone()
                    last = row[1] if row is not None and isinstance(row[1], int) else None
                    event = _event(raw[0]) if raw is not None else None
                    out[name] = ScheduleState(bool(row is not None and row[0]), last, event)
            finally:
                db.execute("COMMIT")
            return out

        states: dict[str, ScheduleState] = await self._read(op)
        return states

    async def set_paused(self, name: str, paused: bool) -> None:
        """Set the schedule's pause flag (every node's next tick sees it)."""

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO schedule_state (name, paused) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                (name, int(bool(paused))),
            )

        await self._write(op)

    async def request_run(self, name: str) -> None:
        """Leave a run request for ``name`` (one pending per schedule; asking again keeps one)."""
        now = time.time()
        await self._write(
            lambda db: db.execute(
                "INSERT INTO schedule_runs (name, requested_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, now),
            )
        )

    async def take_runs(self, names: Sequence[str]) -> list[str]:
        """Delete and return the requests pending for ``names``; a read first, a write only when some are pending."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        pending: list[tuple[Any, ...]] = await self._read(
            lambda db: db.execute("SELECT name FROM schedule_runs LIMIT 1000").fetchall()
        )
        candidates = {row[0] for row in pending} & set(wanted)
        if not candidates:
            return []  # the usual answer: no write lock taken

        def op(db: sqlite3.Connection) -> list[str]:
            taken: list[str] = []
            for name in sorted(candidates):  # inside BEGIN IMMEDIATE: of two takers, the second finds no row
                if db.execute("DELETE FROM schedule_runs WHERE name = ?", (name,)).rowcount == 1:
                    taken.append(name)
            return taken

        result: list[str] = await self._write(op)
        return result

    async def record(self, event: ScheduleEvent, limit: int) -> None:
        """Push ``event`` on its schedule's list, keeping the newest ``limit`` (at most 1,000)."""
        await self._write(lambda db: _push(db, event, limit))

    async def events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name`` (corrupt rows skipped)."""
        count = min(max(0, int(limit)), _EVENTS_CAP)
        rows: list[tuple[Any, ...]] = await self._read(
            lambda db: db.execute(
                "SELECT data FROM schedule_events WHERE schedule = ? ORDER BY seq DESC LIMIT ?", (name, count)
            ).fetchall()
        )
        return [event for (raw,) in rows if (event := _event(raw)) is not None]
