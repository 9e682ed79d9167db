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
from typing import Any, Final, Self

from worker_core.admin import (
    SOURCES,
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
)
from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_core.schedules import ScheduleEvent

from . import _ops as ops
from ._admin_sql import (
    RECORD_COLUMNS,
    Moved,
    absent,
    chunks,
    clean_ids,
    entry,
    make_ready,
    marks,
    node,
    record,
)
from ._browse import browse_query, payload_of
from .backend import SqliteDurableBackend

__all__ = ("DLQ_PAGE_LIMIT", "SqliteAdmin", "clean_ids")

#: Entries one DLQ page returns at most.
DLQ_PAGE_LIMIT: Final = 1000


class SqliteAdmin:
    """Inspect and repair the durable queues of one SQLite file (``DurableAdmin``).

    Args:
        path: the database file (created with its schema when missing, as the backend does).
        default_queue: the queue an empty queue name means.
        busy_timeout: seconds a change waits for a worker's transaction before BackendUnavailableError.
    """

    def __init__(self, path: str, *, default_queue: str = "default", busy_timeout: float = 5.0) -> None:
        self._backend = SqliteDurableBackend(path, default_queue=default_queue, busy_timeout=busy_timeout)
        self.default_queue = default_queue.strip() or "default"
        self.where = self._backend.where
        self._schedules = ScheduleStoreAdmin(self._backend)

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
        return name.strip() or self.default_queue

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
        queue = self._queue(name)

        def op(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE queues SET paused = ? WHERE name = ?", (int(paused), queue)).rowcount == 1

        if not await self._write(op):
            raise ConfigurationError(f"unknown queue {queue!r}")
        if not paused:
            await self._backend.resume(queue)  # wakes idle workers

    async def resume_queue(self, name: str) -> None:
        """Resume one paused queue."""
        await self.pause_queue(name, paused=False)

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""

        def op(db: sqlite3.Connection) -> PauseState:
            names = [r[0] for r in db.execute("SELECT name FROM queues WHERE paused = 1 ORDER BY name")]
            return PauseState(ops.paused(db), tuple(names))

        state: PauseState = await self._read(op)
        return state

    # -- reads ---------------------------------------------------------------------------------------

    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue ready (delayed included), processing and dead counts, due backlog, the DLQ and pauses."""
        wanted = [self._queue(q) for q in queues]
        now = time.time()

        def op(db: sqlite3.Connection) -> Overview:
            known = {r[0]: bool(r[1]) for r in db.execute("SELECT name, paused FROM queues")}
            counts: dict[str, dict[str, int]] = {}
            for queue, state, count in db.execute("SELECT queue, state, COUNT(*) FROM tasks GROUP BY queue, state"):
                counts.setdefault(queue, {})[state] = count
            due = {
                q: (n, oldest)
                for q, n, oldest in db.execute(
                    "SELECT queue, COUNT(*), MIN(ready_at) FROM tasks WHERE state = 'ready' GROUP BY queue"
                )
            }
            names = wanted or sorted(set(known) | set(counts)) or [self.default_queue]
            infos = []
            for name in names:
                c = counts.get(name, {})
                n_due, oldest = due.get(name, (0, None))
                age = max(0.0, now - oldest) if isinstance(oldest, int | float) else 0.0
                infos.append(
                    QueueInfo(
                        name=name,
                        ready=c.get("ready", 0) + c.get("delayed", 0),
                        processing=c.get("leased", 0),
                        dead=c.get("dead", 0) if count_dead else None,
                        paused=known.get(name, False),
                        due=n_due,
                        oldest_due_age_s=age,
                    )
                )
            dead = db.execute("SELECT COUNT(*) FROM tasks WHERE state = 'dead'").fetchone()[0]
            paused_queues = tuple(sorted(n for n, p in known.items() if p))
            return Overview(tuple(sorted(infos, key=lambda q: q.name)), dead, ops.paused(db), paused_queues)

        overview: Overview = await self._read(op)
        return overview

    async def queue_names(self) -> list[str]:
        """Every queue the file knows, sorted."""
        names: list[str] = await self._read(
            lambda db: [r[0] for r in db.execute("SELECT name FROM queues ORDER BY name")]
        )
        return names

    async def dlq_size(self) -> int:
        """How many tasks are dead-lettered."""
        count: int = await self._read(
            lambda db: db.execute("SELECT COUNT(*) FROM tasks WHERE state = 'dead'").fetchone()[0]
        )
        return count

    async def dlq(
        self, *, limit: int = 100, offset: int = 0, queue: str = "", handler: str = "", query: str = ""
    ) -> DLQPage:
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
            total = db.execute("SELECT COUNT(*) FROM tasks WHERE state = 'dead'").fetchone()[0]
            return db.execute(sql, (*args, limit, offset)).fetchall(), total

        rows, total = await self._read(op)
        now = time.time_ns() // 1_000_000
        entries = tuple(entry(record(row), now) for row in rows)
        return DLQPage(entries, total, offset, limit, len(entries), False)

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail; TaskNotFoundError when it is not in the DLQ."""
        record = await self.get(task_id)
        if record.status is not TaskState.DEAD:
            raise TaskNotFoundError(f"task {record.id} is not in the DLQ (status {record.status.value})")
        return DLQEntryDetail(
            entry=entry(record, time.time_ns() // 1_000_000),
            failed_at_ms=record.failed_at_ms,
            updated_at_ms=record.updated_at_ms,
            payload_size=record.payload_size,
            metadata=record.metadata,
            error_type=record.error_type,
            traceback=record.error_traceback,
        )

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
        rows = await self._read(
            lambda db: db.execute(
                "SELECT id, info, last_seen, leases FROM nodes WHERE expires_at > ? ORDER BY last_seen DESC LIMIT 1000",
                (time.time(),),
            ).fetchall()
        )
        return [node(row) for row in rows]

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

        def op(db: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for chunk in chunks(todo):
                found.update(r[0] for r in db.execute(f"SELECT id FROM tasks WHERE id IN ({marks(chunk)})", chunk))
            return found

        found: set[str] = await self._read(op)
        return [i for i in todo if i not in found]

    # -- moves ---------------------------------------------------------------------------------------

    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again (0: all), oldest failure first."""
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        bound = limit or -1

        def op(db: sqlite3.Connection) -> Any:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM tasks WHERE state = 'dead' ORDER BY failed_at, seq LIMIT ?", (bound,)
                )
            ]
            return Moved(make_ready(db, ids, "state = 'dead'", time.time(), "", reset_attempts), ())

        return await self._move(op)

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Make these dead tasks ready again; ids stored nowhere are in ``missing``."""
        todo = clean_ids(ids)

        def op(db: sqlite3.Connection) -> Any:
            return Moved(make_ready(db, todo, "state = 'dead'", time.time(), "", reset_attempts), absent(db, todo))

        return await self._move(op)

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

        def op(db: sqlite3.Connection) -> Any:
            now = time.time()
            moved = make_ready(db, todo, "1", now + delay, target, reset_attempts, now=now)
            return Moved(moved, absent(db, todo))

        return await self._move(op)

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Delete these tasks (in ``queue`` only, if given); a row is the whole task, so ``delete_hash`` is implied."""
        todo = clean_ids(ids)
        only = self._queue(queue) if queue.strip() else None

        def op(db: sqlite3.Connection) -> Any:
            missing = absent(db, todo)
            count = 0
            for chunk in chunks(todo):
                sql = f"DELETE FROM tasks WHERE id IN ({marks(chunk)})"
                count += db.execute(
                    sql + (" AND queue = ?" if only else ""), (*chunk, *([only] if only else []))
                ).rowcount
            return Moved(count, missing, wake=False)

        return await self._move(op)

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

    async def _move(self, op: Any) -> MoveResult:
        def run(db: sqlite3.Connection) -> Any:
            moved: Moved = op(db)
            return ops.Wake(work=moved.wake and moved.count > 0, value=moved)

        done: ops.Wake = await self._write(run)
        moved: Moved = done.value
        return MoveResult(moved.count, tuple(moved.missing))
