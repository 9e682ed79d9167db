"""Schedule state in PostgreSQL: the backend's ``ScheduleBackend`` part (worker_core.schedules).

Tables (schema version 2, ``_schema.py``): ``schedule_ticks`` (one marker row per (schedule, tick), primary key
``(schedule, tick_ms)``, expiring on the server's clock), ``schedules`` (the published records),
``schedule_state`` (pause flag and last fired tick), ``schedule_runs`` (pending "run now" requests) and
``schedule_events`` (a bounded list per schedule, newest by ``seq``).

A tick is one transaction: check the pause flag, insert the marker (``ON CONFLICT ... DO UPDATE ... WHERE`` takes
over an expired one only), insert the task, raise the last tick, push an event. Of nodes inserting the same marker
at once, the later ones wait for the first to commit and then find it: one task per tick. A task id that exists
rolls the marker back too. Expired markers are deleted before the transaction, at most 100 per tick, rows another
node holds skipped. A run request is taken with ``DELETE ... RETURNING``: one taker each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import psycopg
from psycopg import sql
from worker_core.durable.types import DurableTask
from worker_core.schedules.types import (
    PUBLISHED_TTL_S,
    MissedPolicy,
    ScheduleEvent,
    ScheduleRecord,
    ScheduleState,
    TickResult,
)

from ._rows import enqueue_row

if TYPE_CHECKING:  # not at run time: _schema imports this module, and _pool imports _schema
    from ._pool import Pool
    from ._sql import Statements

__all__ = ("SCHEDULE_TABLES", "PostgresSchedules")

EVENT_LIMIT: Final = 100  # events the tick keeps per schedule
_EVENTS_CAP: Final = 1000  # most events kept per schedule, whatever limit a caller asks for
_PRUNE: Final = 100  # expired markers one tick deletes at most

#: The statements of the schema migration that adds these tables (``{s}``: the schema).
SCHEDULE_TABLES: Final = [
    """CREATE TABLE {s}.schedule_ticks (
        schedule text NOT NULL,
        tick_ms bigint NOT NULL,
        task_id uuid NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (schedule, tick_ms)
    )""",
    "CREATE INDEX schedule_ticks_expiry ON {s}.schedule_ticks (expires_at)",
    """CREATE TABLE {s}.schedules (
        name text PRIMARY KEY,
        spec text NOT NULL,
        tz text NOT NULL,
        queue text NOT NULL,
        missed text NOT NULL,
        published_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """CREATE TABLE {s}.schedule_state (
        name text PRIMARY KEY,
        paused boolean NOT NULL DEFAULT false,
        last_tick_ms bigint
    )""",
    """CREATE TABLE {s}.schedule_runs (
        name text PRIMARY KEY,
        requested_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    """CREATE TABLE {s}.schedule_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        schedule text NOT NULL,
        data jsonb NOT NULL
    )""",
    "CREATE INDEX schedule_events_recent ON {s}.schedule_events (schedule, seq DESC)",
]

_SQL: Final = {
    "prune": """DELETE FROM {s}.schedule_ticks WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {s}.schedule_ticks WHERE expires_at <= clock_timestamp()
        LIMIT %(limit)s FOR UPDATE SKIP LOCKED))""",
    "paused": "SELECT paused FROM {s}.schedule_state WHERE name = %(name)s",
    "marker": """INSERT INTO {s}.schedule_ticks (schedule, tick_ms, task_id, expires_at)
        VALUES (%(name)s, %(tick)s, %(id)s, clock_timestamp() + make_interval(secs => %(ttl)s))
        ON CONFLICT (schedule, tick_ms) DO UPDATE SET task_id = excluded.task_id, expires_at = excluded.expires_at
        WHERE {s}.schedule_ticks.expires_at <= clock_timestamp()
        RETURNING 1""",
    "last": """INSERT INTO {s}.schedule_state (name, last_tick_ms) VALUES (%(name)s, %(tick)s)
        ON CONFLICT (name) DO UPDATE SET
        last_tick_ms = greatest({s}.schedule_state.last_tick_ms, excluded.last_tick_ms)""",
    # The DELETE sees the rows as they were before the INSERT: it keeps ``older`` of them beside the new one.
    "push": """WITH pushed AS (INSERT INTO {s}.schedule_events (schedule, data) VALUES (%(name)s, %(data)s::jsonb))
        DELETE FROM {s}.schedule_events WHERE schedule = %(name)s AND seq <= (
            SELECT seq FROM {s}.schedule_events WHERE schedule = %(name)s ORDER BY seq DESC
            LIMIT 1 OFFSET %(older)s)""",
    # The DELETE sees the table as it was before the INSERT: the names just published are kept by name.
    "publish": """WITH published AS (INSERT INTO {s}.schedules (name, spec, tz, queue, missed)
        SELECT * FROM unnest(%(names)s::text[], %(specs)s::text[], %(tzs)s::text[], %(queues)s::text[],
                             %(missed)s::text[])
        ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, tz = excluded.tz, queue = excluded.queue,
            missed = excluded.missed, published_at = clock_timestamp())
        DELETE FROM {s}.schedules WHERE published_at < clock_timestamp() - make_interval(secs => %(ttl)s)
            AND NOT (name = ANY(%(names)s::text[]))""",
    "listed": """SELECT name, spec, tz, queue, missed FROM {s}.schedules
        WHERE published_at >= clock_timestamp() - make_interval(secs => %(ttl)s) ORDER BY name""",
    "states": """SELECT n.name, coalesce(st.paused, false), st.last_tick_ms, ev.data::text
        FROM unnest(%(names)s::text[]) AS n(name)
        LEFT JOIN {s}.schedule_state st ON st.name = n.name
        LEFT JOIN LATERAL (SELECT e.data FROM {s}.schedule_events e WHERE e.schedule = n.name
                           ORDER BY e.seq DESC LIMIT 1) ev ON true""",
    "set_paused": """INSERT INTO {s}.schedule_state (name, paused) VALUES (%(name)s, %(paused)s)
        ON CONFLICT (name) DO UPDATE SET paused = excluded.paused""",
    "request_run": "INSERT INTO {s}.schedule_runs (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING",
    "take_runs": "DELETE FROM {s}.schedule_runs WHERE name = ANY(%(names)s::text[]) RETURNING name",
    "events": """SELECT data::text FROM {s}.schedule_events WHERE schedule = %(name)s
        ORDER BY seq DESC LIMIT %(limit)s""",
}


def _event(raw: object) -> ScheduleEvent | None:
    try:
        return ScheduleEvent.from_json(json.loads(str(raw)))
    except (ValueError, TypeError):
        return None  # a corrupt row is skipped, never raised


def _keep(limit: int) -> int:
    return min(max(1, int(limit)), _EVENTS_CAP)


@final
class PostgresSchedules:
    """Markers, state, run requests and events of the schedules of one schema.

    Args:
        pool: the backend's pool (autocommit connections, errors translated).
        schema: the schema holding the tables.
        statements: the backend's statements (the task insert is the enqueue's).
        default_queue: the queue of a task that names none.
    """

    def __init__(self, pool: Pool, schema: str, statements: Statements, default_queue: Callable[[], str]) -> None:
        self._pool = pool
        self._tasks = statements
        self._default_queue = default_queue
        s = sql.Identifier(schema)
        self._sql = {name: sql.SQL(text).format(s=s) for name, text in _SQL.items()}

    async def enqueue_tick(self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str) -> TickResult:
        """See :meth:`worker_core.schedules.ScheduleBackend.enqueue_tick` (one transaction)."""
        row, task_id = enqueue_row(task, self._default_queue())  # InvalidTaskError before any statement
        tick = int(tick_ms)
        event = ScheduleEvent(schedule, "enqueued", int(time.time() * 1000), tick, str(task_id), node)
        data = json.dumps(event.to_json(), separators=(",", ":"))
        args = {"name": schedule, "tick": tick, "id": task_id, "ttl": max(float(ttl), 0.001)}
        await self._pool.check()
        async with self._pool.connection() as conn:
            await conn.execute(self._sql["prune"], {"limit": _PRUNE})
            try:
                async with conn.transaction():
                    paused = await (await conn.execute(self._sql["paused"], args)).fetchone()
                    if paused is not None and paused[0]:
                        return TickResult.PAUSED
                    if await (await conn.execute(self._sql["marker"], args)).fetchone() is None:
                        return TickResult.DUPLICATE
                    stored = await (await conn.execute(self._tasks.enqueue_one_new_queue, row)).fetchone()
                    if stored is None:
                        raise _TaskExists  # rolls the marker back with the transaction
                    await conn.execute(self._sql["last"], args)
                    await conn.execute(self._sql["push"], {"name": schedule, "data": data, "older": EVENT_LIMIT - 1})
            except _TaskExists:
                return TickResult.DUPLICATE
        return TickResult.ENQUEUED

    async def publish(self, records: Sequence[ScheduleRecord]) -> None:
        """Upsert one row per record (the latest publication of a name wins), stamped now; delete expired rows."""
        latest = {r.name: r for r in records}
        params = {
            "names": list(latest),
            "specs": [r.spec for r in latest.values()],
            "tzs": [r.tz for r in latest.values()],
            "queues": [r.queue for r in latest.values()],
            "missed": [r.missed for r in latest.values()],
            "ttl": PUBLISHED_TTL_S,
        }
        await self._run("publish", params)

    async def listed(self) -> list[ScheduleRecord]:
        """Every record published within the TTL, by name."""
        out: list[ScheduleRecord] = []
        for name, spec, tz, queue, missed in await self._rows("listed", {"ttl": PUBLISHED_TTL_S}):
            policy: MissedPolicy = "once" if missed == "once" else "skip"
            out.append(ScheduleRecord(name, spec, tz, queue, policy))
        return out

    async def states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and newest event of each of ``names`` (one statement)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return {}
        out: dict[str, ScheduleState] = {}
        for name, paused, last, raw in await self._rows("states", {"names": wanted}):
            out[name] = ScheduleState(bool(paused), None if last is None else int(last), _event(raw) if raw else None)
        return out

    async def set_paused(self, name: str, paused: bool) -> None:
        """Set the schedule's pause flag (every node's next tick sees it)."""
        await self._run("set_paused", {"name": name, "paused": bool(paused)})

    async def request_run(self, name: str) -> None:
        """Leave a run request for ``name`` (one pending per schedule; asking again keeps one)."""
        await self._run("request_run", {"name": name})

    async def take_runs(self, names: Sequence[str]) -> list[str]:
        """Delete and return the requests pending for ``names`` (``DELETE ... RETURNING``: one taker each)."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        return sorted(row[0] for row in await self._rows("take_runs", {"names": wanted}))

    async def record(self, event: ScheduleEvent, limit: int) -> None:
        """Push ``event`` on its schedule's list, keeping the newest ``limit`` (at most 1,000)."""
        data = json.dumps(event.to_json(), separators=(",", ":"))
        await self._run("push", {"name": event.schedule, "data": data, "older": _keep(limit) - 1})

    async def events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name`` (corrupt rows skipped)."""
        count = min(max(0, int(limit)), _EVENTS_CAP)
        rows = await self._rows("events", {"name": name, "limit": count})
        return [event for (raw,) in rows if (event := _event(raw)) is not None]

    async def _run(self, name: str, params: dict[str, Any]) -> None:
        await self._pool.check()
        async with self._pool.connection() as conn:
            await conn.execute(self._sql[name], params)

    async def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        await self._pool.check()
        async with self._pool.connection() as conn:
            cur: psycopg.AsyncCursor[Any] = await conn.execute(self._sql[name], params)
            return await cur.fetchall()


class _TaskExists(Exception):
    """Raised inside the tick's transaction to roll it back when the task id is stored already."""
