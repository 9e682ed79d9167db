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

from collections.abc import Iterable, Sequence
from typing import Any, Self

from psycopg import sql
from worker_core.admin import (
    SOURCES,
    DLQEntryDetail,
    DLQPage,
    MoveResult,
    NodeInfo,
    Overview,
    PauseState,
    PurgeResult,
    ScheduleStoreAdmin,
    ScheduleSummary,
    TaskPage,
    TaskRecord,
)
from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_core.schedules import ScheduleEvent

from ._browse import RECORD_COLUMNS, browse_query, record
from ._dlq import DLQ_PAGE_LIMIT, DeadLetters, detail
from ._moves import MAX_IDS, Moves, as_uuid
from ._nodes import LIVE_NODES, node_record
from ._rows import normalize_queue
from ._summary import OVERVIEW, QUEUE_NAMES, queue_infos
from .backend import PostgresDurableBackend

__all__ = ("DLQ_PAGE_LIMIT", "MAX_IDS", "PostgresAdmin")


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
        self._control = backend._control
        self._moves = Moves(self._rows)
        self._dlq = DeadLetters(self._rows, self._moves)

    @property
    def default_queue(self) -> str:
        """The queue an empty queue name means: the backend's (``?default_queue=`` or its ``default_queue``)."""
        return self._backend.queue_settings()[0]

    def _queue(self, name: str) -> str:
        return normalize_queue(name, self.default_queue)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """An admin for ``url`` (the same URL, ``?schema=`` and ``?default_queue=`` as the backend's); no I/O yet."""
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
        await self._control.set_queue_paused(self._queue(name), paused)  # a resume wakes idle workers

    async def resume_queue(self, name: str) -> None:
        """Resume one paused queue."""
        await self.pause_queue(name, paused=False)

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""
        return await self._control.state()

    # -- counts ------------------------------------------------------------------------------------
    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue ready (delayed included), due, processing and dead counts, the DLQ length, the pause flags."""
        names = [self._queue(q) for q in queues] or None
        found = await self._rows(OVERVIEW, {"names": names})
        state = await self.pause_state()
        infos = queue_infos(found, names, count_dead=count_dead)
        return Overview(tuple(infos), await self.dlq_size(), state.paused, state.paused_queues)

    async def queue_names(self) -> list[str]:
        """Every queue the schema knows, sorted."""
        return [name for (name,) in await self._rows(QUEUE_NAMES)]

    async def dlq_size(self) -> int:
        """How many tasks are dead-lettered."""
        return await self._dlq.size()

    # -- DLQ ---------------------------------------------------------------------------------------
    async def dlq(
        self, *, limit: int = 100, offset: int = 0, queue: str = "", handler: str = "", query: str = ""
    ) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` exact, ``query`` a case-insensitive substring.

        ``query`` matches the id, queue, handler or last error.
        """
        return await self._dlq.page(limit=limit, offset=offset, queue=queue, handler=handler, query=query)

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail (TaskNotFoundError when it is not in the DLQ)."""
        return detail(await self.get(task_id), task_id)

    # -- single tasks ------------------------------------------------------------------------------
    async def get(self, task_id: str) -> TaskRecord:
        """One task, wherever it is (TaskNotFoundError when it is not stored; acked tasks are deleted)."""
        key = as_uuid(task_id)
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
        wanted = self._queue(queue) if queue.strip() else ""
        bounds = {"since_ms": since_ms, "until_ms": until_ms, "limit": limit, "offset": offset}
        query = browse_query(state, queue=wanted, handler=handler, **bounds)
        await self._backend.connect()
        async with self._backend._connection() as conn:
            return await query.run(conn, self._s)

    async def task_payload(self, task_id: str) -> bytes:
        """The stored payload bytes of ``task_id`` (TaskNotFoundError when it is not stored)."""
        key = as_uuid(task_id)
        found = await self._rows("SELECT payload FROM {s}.tasks WHERE id = %(id)s", {"id": key}) if key else []
        if not found:
            raise TaskNotFoundError(f"task {task_id} not found")
        return bytes(found[0][0])

    async def missing_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids among ``ids`` that have no stored task, in the order given."""
        return await self._moves.missing(ids)

    async def nodes(self) -> list[NodeInfo]:
        """The live worker nodes (heartbeat not expired), most recently started first; at most 1,000."""
        out = [node_record(node_id, info, seen) for node_id, info, seen in await self._rows(LIVE_NODES)]
        return sorted(out, key=lambda node: (-node.started_ms, node.id))

    # -- moves -------------------------------------------------------------------------------------
    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again, oldest first (``limit=0``: all, at most MAX_IDS)."""
        return await self._dlq.replay(limit, reset_attempts=reset_attempts)

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``, live ones are left alone.

        A replayed task takes its idempotency key back unless a live task holds it now: then it runs without one.
        """
        return await self._dlq.replay_ids(ids, reset_attempts=reset_attempts)

    async def requeue(
        self, ids: Iterable[str], *, queue: str = "", delay: float = 0.0, reset_attempts: bool = False
    ) -> MoveResult:
        """Make these tasks ready (after ``delay`` s, in ``queue`` if given) whatever their state; fenced."""
        delay_s = max(float(delay), 0.0)
        return await self._moves.make_ready(ids, "true", queue=queue.strip(), delay=delay_s, reset=reset_attempts)

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Delete these tasks (only from ``queue`` when given); the row is the record, so ``delete_hash`` is moot."""
        return await self._moves.delete(ids, queue=queue)

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
        names = [self._queue(q) for q in queues] or None
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
            params = {"state": state, "queue": self._queue(from_queue), "n": bound}
        return [i for (i,) in await self._rows(query, params)]
