"""``PostgresAdmin``: worker-core's :class:`~worker_core.admin.DurableAdmin` (and ``TaskBrowser``) over one schema.

Every state change is one statement (atomic per call) that clears the moved tasks' lease tokens, so a worker
still holding one of them can no longer settle it. Reads are bounded: pages of at most
:data:`DLQ_PAGE_LIMIT`, id lists of at most :data:`MAX_IDS`::

    async with PostgresAdmin.from_url("postgresql://localhost/app?schema=worker") as admin:
        overview = await admin.overview()
        page = await admin.dlq(queue="emails", query="timeout")
        await admin.replay_dlq_ids([entry.id for entry in page.entries], reset_attempts=True)
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Self

from psycopg import sql
from worker_core.admin import (
    SOURCES,
    DLQEntry,
    DLQEntryDetail,
    DLQPage,
    MoveResult,
    NodeInfo,
    Overview,
    PauseState,
    PurgeResult,
    QueueInfo,
    ScheduleStoreAdmin,
    ScheduleSummary,
    TaskPage,
    TaskRecord,
    TaskState,
    parse_weights,
)
from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_core.schedules import ScheduleEvent

from ._browse import RECORD_COLUMNS, browse_query, ms, record
from ._rows import normalize_queue
from .backend import PostgresDurableBackend

__all__ = ("DLQ_PAGE_LIMIT", "MAX_IDS", "PostgresAdmin")

#: Entries one DLQ page holds at most.
DLQ_PAGE_LIMIT = 1000
#: Ids one move (replay, requeue, delete) or listing takes at most.
MAX_IDS = 10_000


class PostgresAdmin:
    """Inspect and repair the durable tasks of one schema (see :class:`~worker_core.admin.DurableAdmin`).

    Args:
        backend: the backend whose pool and schema it uses (closed with the admin when it built it).
    """

    def __init__(self, backend: PostgresDurableBackend, *, owns_backend: bool = False) -> None:
        self._backend = backend
        self._owns = owns_backend
        self.where = backend.where
        self._s = sql.Identifier(backend.schema)
        self._schedules = ScheduleStoreAdmin(backend)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """An admin for ``url`` (the same URL and ``?schema=`` as the backend's); no I/O yet."""
        options.setdefault("listen", False)
        options.setdefault("pool_max", 2)
        return cls(PostgresDurableBackend.from_url(url, **options), owns_backend=True)

    async def aclose(self) -> None:
        """Close the pool when this admin opened it."""
        if self._owns:
            await self._backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- schedules (ScheduleAdmin, over the backend's ScheduleBackend: worker_core.admin.ScheduleStoreAdmin) --
    async def schedules(self) -> list[ScheduleSummary]:
        """Every durable schedule some node published, by name, with its next and last run and pause flag."""
        return await self._schedules.schedules()

    async def pause_schedule(self, name: str) -> None:
        """Pause a schedule on every node (ConfigurationError when no node published it)."""
        await self._schedules.pause_schedule(name)

    async def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule (ConfigurationError when no node published it)."""
        await self._schedules.resume_schedule(name)

    async def run_schedule_now(self, name: str) -> str:
        """Request one run now: ``""``, one node that runs the schedule takes it and enqueues the task."""
        return await self._schedules.run_schedule_now(name)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of a schedule, newest first."""
        return await self._schedules.schedule_events(name, limit)

    async def _rows(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        await self._backend.connect()
        async with self._backend._connection() as conn:
            cursor = await conn.execute(sql.SQL(query).format(s=self._s), params)
            return list(await cursor.fetchall()) if cursor.description else []

    async def _wake(self) -> None:
        await self._rows("SELECT pg_notify(%(channel)s, '')", {"channel": f"{self._backend.schema}_wake"})

    async def ping(self) -> None:
        """Check the server answers and the schema is current (BackendUnavailableError, ConfigurationError)."""
        await self._rows("SELECT 1")

    # -- pause -------------------------------------------------------------------------------------
    async def pause(self) -> None:
        """Stop every node from leasing (tasks already leased finish)."""
        await self._backend.pause()

    async def resume(self) -> None:
        """Undo :meth:`pause` (wakes idle workers)."""
        await self._backend.resume()

    async def pause_queue(self, name: str, *, paused: bool = True) -> None:
        """Pause (or resume) one queue; an unknown queue is a ConfigurationError and changes nothing."""
        queue = normalize_queue(name)
        got = await self._rows(
            "UPDATE {s}.queues SET paused = %(paused)s WHERE name = %(name)s RETURNING 1",
            {"paused": paused, "name": queue},
        )
        if not got:
            raise ConfigurationError(f"unknown queue {queue!r}")
        if not paused:
            await self._wake()

    async def resume_queue(self, name: str) -> None:
        """Resume one paused queue."""
        await self.pause_queue(name, paused=False)

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""
        [(paused, names)] = await self._rows(
            "SELECT (SELECT paused FROM {s}.control WHERE id = 1),"
            " coalesce(array(SELECT name FROM {s}.queues WHERE paused ORDER BY name), '{{}}')"
        )
        return PauseState(paused=bool(paused), paused_queues=tuple(names))

    # -- counts ------------------------------------------------------------------------------------
    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue ready (delayed included), due, processing and dead counts, the DLQ length, the pause flags."""
        names = [normalize_queue(q) for q in queues] or None
        found = await self._rows(
            """SELECT q.name, q.paused,
                   count(*) FILTER (WHERE t.state = 'ready'),
                   count(*) FILTER (WHERE t.state = 'leased'),
                   count(*) FILTER (WHERE t.state = 'dead'),
                   count(*) FILTER (WHERE t.state = 'ready' AND t.available_at <= clock_timestamp()),
                   extract(epoch FROM clock_timestamp() - min(t.ready_at) FILTER (
                       WHERE t.state = 'ready' AND t.available_at <= clock_timestamp()))::float8
               FROM {s}.queues q LEFT JOIN {s}.tasks t ON t.queue = q.name
               WHERE %(names)s::text[] IS NULL OR q.name = ANY(%(names)s::text[])
               GROUP BY q.name, q.paused ORDER BY q.name""",
            {"names": names},
        )
        state = await self.pause_state()
        infos = [
            QueueInfo(
                name=name,
                ready=int(ready),
                processing=int(leased),
                dead=int(dead) if count_dead else None,
                paused=bool(paused),
                due=int(due),
                oldest_due_age_s=max(0.0, float(age or 0.0)),
            )
            for name, paused, ready, leased, dead, due, age in found
        ]
        if names:
            known = {info.name for info in infos}
            infos += [QueueInfo(n, 0, 0, 0 if count_dead else None, False) for n in names if n not in known]
        return Overview(tuple(infos), await self.dlq_size(), state.paused, state.paused_queues)

    async def queue_names(self) -> list[str]:
        """Every queue the schema knows, sorted."""
        return [name for (name,) in await self._rows("SELECT name FROM {s}.queues ORDER BY name")]

    async def dlq_size(self) -> int:
        """How many tasks are dead-lettered."""
        [(count,)] = await self._rows("SELECT count(*) FROM {s}.tasks WHERE state = 'dead'")
        return int(count)

    # -- DLQ ---------------------------------------------------------------------------------------
    async def dlq(
        self, *, limit: int = 100, offset: int = 0, queue: str = "", handler: str = "", query: str = ""
    ) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` exact, ``query`` a case-insensitive substring.

        ``query`` matches the id, queue, handler or last error.
        """
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
               WHERE state = 'dead'
                 AND (%(queue)s::text IS NULL OR queue = %(queue)s)
                 AND (%(handler)s::text IS NULL OR handler = %(handler)s)
                 AND (%(query)s::text IS NULL OR id::text ILIKE %(query)s OR queue ILIKE %(query)s
                      OR handler ILIKE %(query)s OR last_error ILIKE %(query)s)
               ORDER BY failed_at DESC, seq DESC LIMIT %(limit)s OFFSET %(offset)s""",
            params,
        )
        entries = tuple(
            DLQEntry(id=i, queue=q, handler=h, attempts=int(a), age_ms=ms(max(age or 0.0, 0.0)), last_error=e)
            for i, q, h, a, e, age, _ in found
        )
        total = int(found[0][6]) if found else (await self._count_dead(params) if offset else 0)
        return DLQPage(entries=entries, total=total, offset=offset, limit=limit, scanned=total, truncated=False)

    async def _count_dead(self, params: dict[str, Any]) -> int:
        [(count,)] = await self._rows(
            """SELECT count(*) FROM {s}.tasks WHERE state = 'dead'
                 AND (%(queue)s::text IS NULL OR queue = %(queue)s)
                 AND (%(handler)s::text IS NULL OR handler = %(handler)s)
                 AND (%(query)s::text IS NULL OR id::text ILIKE %(query)s OR queue ILIKE %(query)s
                      OR handler ILIKE %(query)s OR last_error ILIKE %(query)s)""",
            params,
        )
        return int(count)

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail (TaskNotFoundError when it is not in the DLQ)."""
        record = await self.get(task_id)
        if record.status is not TaskState.DEAD:
            raise TaskNotFoundError(f"task {task_id} is not in the dead-letter queue")
        entry = DLQEntry(
            id=record.id,
            queue=record.queue,
            handler=record.handler,
            attempts=record.attempts,
            age_ms=max(0, int(time.time() * 1000) - record.failed_at_ms),
            last_error=record.last_error,
        )
        return DLQEntryDetail(
            entry=entry,
            failed_at_ms=record.failed_at_ms,
            updated_at_ms=record.updated_at_ms,
            payload_size=record.payload_size,
            metadata=record.metadata,
            error_type=record.error_type,
            traceback=record.error_traceback,
        )

    # -- single tasks ------------------------------------------------------------------------------
    async def get(self, task_id: str) -> TaskRecord:
        """One task, wherever it is (TaskNotFoundError when it is not stored; acked tasks are deleted)."""
        key = _uuid(task_id)
        if key is None:
            raise TaskNotFoundError(f"task {task_id} not found")
        found = await self._rows("SELECT " + RECORD_COLUMNS + " FROM {s}.tasks WHERE id = %(id)s", {"id": key})
        if not found:
            raise TaskNotFoundError(f"task {task_id} not found")
        return record(found[0])

    async def browse_tasks(
        self,
        state: str,
        *,
        queue: str = "",
        handler: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
        limit: int = 50,
        offset: int = 0,
    ) -> TaskPage:
        """A page of tasks in ``state`` (ready, delayed, processing, dead), newest first (see ``TaskBrowser``)."""
        wanted = normalize_queue(queue) if queue.strip() else ""
        bounds = {"since_ms": since_ms, "until_ms": until_ms, "limit": limit, "offset": offset}
        query = browse_query(state, queue=wanted, handler=handler, **bounds)
        await self._backend.connect()
        async with self._backend._connection() as conn:
            return await query.run(conn, self._s)

    async def task_payload(self, task_id: str) -> bytes:
        """The stored payload bytes of ``task_id`` (TaskNotFoundError when it is not stored)."""
        key = _uuid(task_id)
        found = await self._rows("SELECT payload FROM {s}.tasks WHERE id = %(id)s", {"id": key}) if key else []
        if not found:
            raise TaskNotFoundError(f"task {task_id} not found")
        return bytes(found[0][0])

    async def missing_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids among ``ids`` that have no stored task, in the order given."""
        wanted = _bounded(ids)
        keys = [k for k in (_uuid(i) for i in wanted) if k is not None]
        found = {str(i) for (i,) in await self._rows("SELECT id FROM {s}.tasks WHERE id = ANY(%(ids)s)", {"ids": keys})}
        return [i for i in wanted if str(_uuid(i)) not in found]

    async def nodes(self) -> list[NodeInfo]:
        """The live worker nodes (heartbeat not expired), most recently started first; at most 1,000."""
        found = await self._rows(
            """SELECT id, info, extract(epoch FROM last_seen)::float8 FROM {s}.nodes
               WHERE expires_at > clock_timestamp() ORDER BY last_seen DESC LIMIT 1000"""
        )
        out = [_node(node_id, info, seen) for node_id, info, seen in found]
        return sorted(out, key=lambda node: (-node.started_ms, node.id))

    # -- moves -------------------------------------------------------------------------------------
    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again, oldest first (``limit=0``: all, at most MAX_IDS)."""
        found = await self._rows(
            "SELECT id::text FROM {s}.tasks WHERE state = 'dead' ORDER BY failed_at, seq LIMIT %(limit)s",
            {"limit": limit if limit > 0 else MAX_IDS},
        )
        return await self.replay_dlq_ids([i for (i,) in found], reset_attempts=reset_attempts)

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``, live ones are left alone.

        A replayed task takes its idempotency key back unless a live task holds it now: then it runs without one.
        """
        return await self._move(ids, "state = 'dead'", queue="", delay=0.0, reset=reset_attempts)

    async def requeue(
        self, ids: Iterable[str], *, queue: str = "", delay: float = 0.0, reset_attempts: bool = False
    ) -> MoveResult:
        """Make these tasks ready (after ``delay`` s, in ``queue`` if given) whatever their state; fenced."""
        return await self._move(ids, "true", queue=queue.strip(), delay=max(float(delay), 0.0), reset=reset_attempts)

    async def _move(self, ids: Iterable[str], where: str, *, queue: str, delay: float, reset: bool) -> MoveResult:
        wanted = _bounded(ids)
        keys = [k for k in (_uuid(i) for i in wanted) if k is not None]
        params = {"ids": keys, "queue": queue or None, "delay": delay, "reset": reset}
        moved = await self._rows(
            """WITH known AS (INSERT INTO {s}.queues (name) SELECT %(queue)s WHERE %(queue)s::text IS NOT NULL
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
            + where
            + """ RETURNING id),
               -- they run again: the outcomes of their earlier runs go, so a handle waits for the new ones
               forgotten AS (DELETE FROM {s}.outcomes WHERE id IN (SELECT id FROM moved))
               SELECT id::text FROM moved""",
            params,
        )
        return MoveResult(count=len(moved), missing=tuple(await self.missing_ids(wanted)))

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Delete these tasks (only from ``queue`` when given); the row is the record, so ``delete_hash`` is moot."""
        wanted = _bounded(ids)
        keys = [k for k in (_uuid(i) for i in wanted) if k is not None]
        gone = await self._rows(
            """DELETE FROM {s}.tasks WHERE id = ANY(%(ids)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s)
               RETURNING id::text""",
            {"ids": keys, "queue": queue.strip() or None},
        )
        deleted = {i for (i,) in gone}
        return MoveResult(count=len(deleted), missing=tuple(i for i in wanted if str(_uuid(i)) not in deleted))

    async def purge(
        self,
        *,
        queues: Sequence[str] = (),
        ready: bool = False,
        processing: bool = False,
        dlq: bool = False,
        limit: int = 0,
        delete_hash: bool = False,
    ) -> PurgeResult:
        """Delete up to ``limit`` (0: all) tasks of the chosen states and queues (every queue when empty)."""
        names = [normalize_queue(q) for q in queues] or None
        counts: dict[str, dict[str, int]] = {"ready": {}, "leased": {}}
        dead: int | None = None
        for state, chosen in (("ready", ready), ("leased", processing), ("dead", dlq)):
            if not chosen:
                continue
            gone = await self._rows(
                """DELETE FROM {s}.tasks WHERE id IN (
                       SELECT id FROM {s}.tasks WHERE state = %(state)s
                         AND (%(names)s::text[] IS NULL OR queue = ANY(%(names)s::text[]) OR %(state)s = 'dead')
                       ORDER BY seq LIMIT %(limit)s)
                   RETURNING queue""",
                {"state": state, "names": names, "limit": limit if limit > 0 else None},
            )
            if state == "dead":
                dead = len(gone)
                continue
            for (name,) in gone:
                counts[state][name] = counts[state].get(name, 0) + 1
        return PurgeResult(ready=counts["ready"], processing=counts["leased"], dead=dead)

    async def ids_from(self, source: str, *, from_queue: str = "", limit: int = 100) -> list[str]:
        """The first ``limit`` ids (0: all, at most MAX_IDS) of the DLQ (newest first) or of one queue's set."""
        if source not in SOURCES:
            raise ConfigurationError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        if source != "dlq" and not from_queue.strip():
            raise ConfigurationError("a queue is required for source ready/processing")
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        bound = min(limit or MAX_IDS, MAX_IDS)
        if source == "dlq":
            query = "SELECT id::text FROM {s}.tasks WHERE state = 'dead' ORDER BY failed_at DESC, seq DESC LIMIT %(n)s"
            params: dict[str, Any] = {"n": bound}
        else:
            query = (
                "SELECT id::text FROM {s}.tasks WHERE state = %(state)s AND queue = %(queue)s"
                " ORDER BY priority, weight DESC, ready_at, seq LIMIT %(n)s"
            )
            state = "ready" if source == "ready" else "leased"
            params = {"state": state, "queue": normalize_queue(from_queue), "n": bound}
        return [i for (i,) in await self._rows(query, params)]


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


def _bounded(ids: Iterable[str]) -> list[str]:
    out = list(dict.fromkeys(str(i).strip() for i in ids if str(i).strip()))
    if len(out) > MAX_IDS:
        raise ConfigurationError(f"at most {MAX_IDS} ids per call, got {len(out)}")
    return out


def _node(node_id: str, info: object, seen: float) -> NodeInfo:
    data = info if isinstance(info, dict) else {}
    if isinstance(info, str):
        try:
            loaded = json.loads(info)
        except ValueError:
            loaded = {}
        data = loaded if isinstance(loaded, dict) else {}

    def number(value: object) -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0

    queues = data.get("queues")
    return NodeInfo(
        id=node_id,
        host=str(data.get("host", "")),
        pid=int(number(data.get("pid"))),
        started_ms=int(number(data.get("started")) * 1000),
        queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
        running=int(number(data.get("running"))),
        last_seen_ms=ms(seen),
        weights=parse_weights(data.get("weights")),
    )
