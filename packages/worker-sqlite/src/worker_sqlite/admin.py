"""``SqliteAdmin``: worker-core's :class:`~worker_core.admin.DurableAdmin` (and ``TaskBrowser``) over an SQLite file.

Every change is one write transaction over a bounded batch of ids, so it is atomic per call and fences
the tasks it moves (their lease token is cleared: a worker still holding one cannot settle it). Reads are
single queries on the read connection, bounded by their page size.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, Self

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

from . import _summary as summary
from ._admin_sql import RECORD_COLUMNS, Moved, absent, clean_ids, make_ready, record, run_move
from ._browse import browse_query, payload_of
from ._dlq import DLQ_PAGE_LIMIT, DeadLetters, detail
from ._nodes import live_nodes, node_record
from ._ops import chunks, marks
from ._rows import queue_name
from .backend import SqliteDurableBackend

__all__ = ("DLQ_PAGE_LIMIT", "SqliteAdmin", "clean_ids")


class SqliteAdmin:
    """Inspect and repair the durable queues of one SQLite file (``DurableAdmin``).

    Args:
        path: the database file. A missing file is a ConfigurationError at the first call (a mistyped path
            would otherwise be created, empty, and reported as queues with nothing in them); ``create=True``
            creates it with its schema, as the backend does.
        default_queue: the queue an empty queue name means.
        busy_timeout: seconds a change waits for a worker's transaction before BackendUnavailableError.
    """

    def __init__(
        self, path: str, *, default_queue: str = "default", busy_timeout: float = 5.0, create: bool = False
    ) -> None:
        self._backend = SqliteDurableBackend(
            path, default_queue=default_queue, busy_timeout=busy_timeout, create=create
        )
        self.default_queue = default_queue.strip() or "default"
        self.where = self._backend.where
        self._schedules = ScheduleStoreAdmin(self._backend)
        self._control = self._backend._control
        self._dlq = DeadLetters(self._write, self._read, self._queue)

    @classmethod
    def from_url(cls, url: str) -> Self:
        """An admin for ``sqlite:///path.db`` (the backend's URL; options other than the two above are ignored).

        Raises:
            ConfigurationError: a bad URL.
        """
        from ._url import parse_url

        parsed = parse_url(url)
        options = {k: v for k, v in parsed.options.items() if k in ("default_queue", "busy_timeout")}
        return cls(parsed.path, **options)

    async def aclose(self) -> None:
        """Close the file."""
        await self._backend.aclose()

    async def __aenter__(self) -> Self:
        await self._backend.connect()
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

    def _queue(self, name: str) -> str:
        return queue_name(name, self.default_queue)

    async def _read(self, op: Any) -> Any:
        return await self._backend._read(op)

    async def _write(self, op: Any) -> Any:
        return await self._backend._write(op)

    # -- pause ---------------------------------------------------------------------------------------

    async def ping(self) -> None:
        """Check the file can be opened and read."""
        await self._read(lambda db: db.execute("SELECT 1").fetchone())

    async def pause(self) -> None:
        """Stop every node from leasing."""
        await self._backend.pause()

    async def resume(self) -> None:
        """Lift the global pause."""
        await self._backend.resume()

    async def pause_queue(self, name: str, *, paused: bool = True) -> None:
        """Pause (or resume) one queue; an unknown queue is a ConfigurationError and changes nothing."""
        await self._control.set_queue_paused(name, paused)  # a resume wakes idle workers

    async def resume_queue(self, name: str) -> None:
        """Resume one paused queue."""
        await self.pause_queue(name, paused=False)

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""
        return await self._control.state()

    # -- reads ---------------------------------------------------------------------------------------

    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue ready (delayed included), processing and dead counts, due backlog, the DLQ and pauses."""
        wanted = [self._queue(q) for q in queues]
        now, default = time.time(), self.default_queue
        found: Overview = await self._read(
            lambda db: summary.overview(db, wanted, default_queue=default, count_dead=count_dead, now=now)
        )
        return found

    async def queue_names(self) -> list[str]:
        """Every queue the file knows, sorted."""
        names: list[str] = await self._read(summary.queue_names)
        return names

    async def dlq_size(self) -> int:
        """How many tasks are dead-lettered."""
        return await self._dlq.size()

    async def dlq(
        self, *, limit: int = 100, offset: int = 0, queue: str = "", handler: str = "", query: str = ""
    ) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` match exactly, ``query`` is a substring."""
        return await self._dlq.page(limit=limit, offset=offset, queue=queue, handler=handler, query=query)

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail; TaskNotFoundError when it is not in the DLQ."""
        return detail(await self.get(task_id))

    async def get(self, task_id: str) -> TaskRecord:
        """One task, wherever it is; TaskNotFoundError when it is not stored."""
        key = task_id.strip()
        row = await self._read(
            lambda db: db.execute(f"SELECT {RECORD_COLUMNS} FROM tasks WHERE id = ?", (key,)).fetchone()
        )
        if row is None:
            raise TaskNotFoundError(f"no durable task {key!r} in {self.where}")
        return record(row)

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
        query = browse_query(state, queue=wanted, handler=handler, now=time.time(), **bounds)
        page: TaskPage = await self._read(query.run)
        return page

    async def task_payload(self, task_id: str) -> bytes:
        """The stored payload bytes of ``task_id`` (TaskNotFoundError when it is not stored)."""
        key = task_id.strip()
        found: bytes | None = await self._read(lambda db: payload_of(db, key))
        if found is None:
            raise TaskNotFoundError(f"no durable task {key!r} in {self.where}")
        return found

    async def nodes(self) -> list[NodeInfo]:
        """The live worker nodes (heartbeat not expired), newest heartbeat first."""
        now = time.time()
        rows = await self._read(lambda db: live_nodes(db, now))
        return [node_record(row) for row in rows]

    async def ids_from(self, source: str, *, from_queue: str = "", limit: int = 100) -> list[str]:
        """The first ``limit`` ids (0: all) of the DLQ (newest first) or one queue's ready or processing set."""
        if source not in SOURCES:
            raise ConfigurationError(f"source must be one of {', '.join(SOURCES)}")
        if source != "dlq" and not from_queue.strip():
            raise ConfigurationError("from_queue is required for source ready/processing")
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        bound = limit or -1
        args: list[Any]
        if source == "dlq":
            sql, args = "SELECT id FROM tasks WHERE state = 'dead' ORDER BY failed_at DESC, seq DESC LIMIT ?", [bound]
        elif source == "ready":
            sql = (
                "SELECT id FROM tasks WHERE state IN ('ready', 'delayed') AND queue = ? ORDER BY ready_at, seq LIMIT ?"
            )
            args = [self._queue(from_queue), bound]
        else:
            sql = "SELECT id FROM tasks WHERE state = 'leased' AND queue = ? ORDER BY expires_at, seq LIMIT ?"
            args = [self._queue(from_queue), bound]
        ids: list[str] = await self._read(lambda db: [r[0] for r in db.execute(sql, args)])
        return ids

    async def missing_ids(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` that have no stored task (order kept)."""
        todo = clean_ids(ids)
        missing: list[str] = await self._read(lambda db: absent(db, todo))
        return missing

    # -- moves ---------------------------------------------------------------------------------------

    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again (0: all), oldest failure first."""
        return await self._dlq.replay(limit, reset_attempts=reset_attempts)

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``."""
        return await self._dlq.replay_ids(ids, reset_attempts=reset_attempts)

    async def requeue(
        self, ids: Iterable[str], *, queue: str = "", delay: float = 0.0, reset_attempts: bool = False
    ) -> MoveResult:
        """Make these tasks ready after ``delay`` seconds (in ``queue`` if given), whatever their state.

        Each gets a fresh lease token, so a worker still holding one cannot settle it.
        """
        if not (delay >= 0 and math.isfinite(delay)):
            raise ConfigurationError("delay must be >= 0")
        todo = clean_ids(ids)
        target = queue.strip()

        def op(db: sqlite3.Connection) -> Moved:
            now = time.time()
            moved = make_ready(db, todo, "1", now + delay, target, reset_attempts, now=now)
            return Moved(moved, absent(db, todo))

        return await run_move(self._write, op)

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Delete these tasks (in ``queue`` only, if given); a row is the whole task, so ``delete_hash`` is implied."""
        todo = clean_ids(ids)
        only = self._queue(queue) if queue.strip() else None

        def op(db: sqlite3.Connection) -> Moved:
            missing = absent(db, todo)
            count = 0
            for chunk in chunks(todo):
                sql = f"DELETE FROM tasks WHERE id IN ({marks(chunk)})"
                count += db.execute(
                    sql + (" AND queue = ?" if only else ""), (*chunk, *([only] if only else []))
                ).rowcount
            return Moved(count, missing, wake=False)

        return await run_move(self._write, op)

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
        """Delete up to ``limit`` (0: all) tasks per queue and set chosen (the DLQ newest first)."""
        if not (ready or processing or dlq):
            raise ConfigurationError("at least one of ready, processing or dlq is required")
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        names = [self._queue(q) for q in queues] or await self.queue_names()
        bound = limit or -1

        def purge(db: sqlite3.Connection, states: str, where: str, args: Sequence[Any], order: str) -> int:
            sql = (
                f"DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE state IN ({states}) {where} "
                f"ORDER BY {order} LIMIT ?)"
            )
            return db.execute(sql, (*args, bound)).rowcount

        def op(db: sqlite3.Connection) -> PurgeResult:
            removed_ready = {
                n: purge(db, "'ready', 'delayed'", "AND queue = ?", [n], "ready_at, seq") for n in names if ready
            }
            removed_processing = {
                n: purge(db, "'leased'", "AND queue = ?", [n], "expires_at, seq") for n in names if processing
            }
            dead = purge(db, "'dead'", "", [], "failed_at DESC, seq DESC") if dlq else None
            return PurgeResult(removed_ready, removed_processing, dead)

        result: PurgeResult = await self._write(op)
        return result
