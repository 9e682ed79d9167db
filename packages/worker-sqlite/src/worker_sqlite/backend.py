"""``SqliteDurableBackend``: durable tasks in one SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

from worker_core.durable.outcomes import DEFAULT_RECENT_OUTCOMES, DEFAULT_RESULT_TTL, TaskOutcome
from worker_core.durable.types import (
    DEFAULT_DEAD_TTL,
    DEFAULT_EXTRA_DELIVERIES,
    DurableTask,
    DurableTaskLease,
    dead_ttl_seconds,
)
from worker_core.errors import ConfigurationError, WorkerError
from worker_core.schedules.types import ScheduleEvent, ScheduleRecord, ScheduleState, TickResult

from . import _ops as ops
from ._conn import Op, Reader, Writer, open_connection, retry_while_busy
from ._ops import Wake
from ._results import Results
from ._rows import task_row
from ._schedules import SqliteSchedules
from ._schema import open_migrated
from ._url import check_synchronous, parse_url, plain_int, resolve_path
from ._url import seconds as positive_seconds
from ._wake import Waiters, hub_for

__all__ = ("DEFAULT_BUSY_TIMEOUT", "DEFAULT_WAKE_INTERVAL", "SqliteDurableBackend")

logger = logging.getLogger("worker_sqlite")

#: Seconds a write waits for another process's transaction before it raises BackendUnavailableError.
DEFAULT_BUSY_TIMEOUT: Final = 5.0
#: Seconds between two ``PRAGMA data_version`` reads while something waits (cross-process wake-up).
DEFAULT_WAKE_INTERVAL: Final = 0.025


class SqliteDurableBackend:
    """The durable contract in an SQLite file (WAL mode): many processes of one machine share it safely.

    Args:
        path: the database file (relative paths are made absolute now); created with its schema on first open.
        default_queue: queue of tasks enqueued with ``queue=""`` (a ``TaskManager`` sets its own at start).
        queue_weights: dequeue share per queue, weighted round robin carried across calls (missing queues weigh 1).
        extra_deliveries: deliveries beyond ``retries + 1`` before a task is dead-lettered ("delivery limit").
        recent_outcomes: outcomes ``recent_outcomes()`` lists per queue at most.
        dead_ttl: seconds a dead-lettered task is kept (7 days; ``None`` or ``0``: forever); the transaction that
            dead-letters a task deletes up to 100 of the oldest dead tasks that failed longer ago.
        busy_timeout: seconds a write waits for another connection's transaction, then BackendUnavailableError.
        synchronous: ``PRAGMA synchronous``: ``full`` (default: a returned write survives power loss), ``normal``
            (survives a crash of the process; a power loss may drop the last commits), ``off``, ``extra``.
        wake_interval: seconds between ``PRAGMA data_version`` reads while a worker or a result waiter idles.

    Every SQLite call runs in the thread of its connection (one writer, one reader per backend object), never
    on the event loop. Writes use ``BEGIN IMMEDIATE``; writes queued while one runs share the next
    transaction. Leases carry fencing tokens: ``ack``/``nack``/``fail``/``extend``/``release`` with a lease
    that is no longer current raise :class:`~worker_core.errors.LeaseLostError` and change nothing.

    Raises:
        ConfigurationError: a bad option or ``:memory:`` (construction); at open, a file that is not SQLite,
            cannot be opened, or has a newer schema.
    """

    supports_idempotency_keys: Final = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_queue: str = "default",
        queue_weights: Mapping[str, int] | None = None,
        extra_deliveries: int = DEFAULT_EXTRA_DELIVERIES,
        recent_outcomes: int = DEFAULT_RECENT_OUTCOMES,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: str = "full",
        wake_interval: float = DEFAULT_WAKE_INTERVAL,
        dead_ttl: float | None = DEFAULT_DEAD_TTL,
    ) -> None:
        self.path = resolve_path(path)  # type: ignore[arg-type]
        self.where = f"sqlite at {self.path}"
        if not plain_int(extra_deliveries, 0):
            raise ConfigurationError(f"extra_deliveries must be an int >= 0, got {extra_deliveries!r}")
        if not plain_int(recent_outcomes, 1):
            raise ConfigurationError(f"recent_outcomes must be an int >= 1, got {recent_outcomes!r}")
        self._extra = extra_deliveries
        self._recent_limit = recent_outcomes
        self._dead_ttl = dead_ttl_seconds(dead_ttl)
        self._busy = positive_seconds(busy_timeout, "busy_timeout")
        self._sync = check_synchronous(synchronous)
        self._interval = positive_seconds(wake_interval, "wake_interval")
        self._default_queue = "default"
        self._outcome_ttl: float | None = DEFAULT_RESULT_TTL
        self._rr = ops.DequeueState()
        self.configure_queues(default_queue, queue_weights or {})
        self.owner = str(uuid.uuid4())
        self._node_info: dict[str, object] = {}
        self._node_held: Callable[[], int] | None = None
        self._node_fresh = False  # registered but not yet written: the next dequeue writes it
        self._hub = hub_for(self.path)
        self._results = Results(self._write, self._read, lambda: self._waiters)
        self._waiters = Waiters(self._data_version, self._results.existing, self._interval)
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._open_lock: asyncio.Lock | None = None
        self._schedules = SqliteSchedules(self._write, self._read, lambda: self._default_queue)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A backend for ``sqlite:///relative.db`` or ``sqlite:////absolute.db``; opens lazily.

        The query may set ``busy_timeout``, ``synchronous``, ``wake_interval``, ``default_queue``,
        ``extra_deliveries``, ``recent_outcomes`` and ``dead_ttl`` (seconds, ``0``: forever); keyword ``options`` win
        over the query.

        Raises:
            ConfigurationError: bad URL or option, or ``sqlite:///:memory:``.
        """
        parsed = parse_url(url)
        try:
            return cls(parsed.path, **{**parsed.options, **options})
        except TypeError as exc:
            raise ConfigurationError(f"SqliteDurableBackend: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the file (creating it and its schema, or migrating it); every operation calls this first.

        Raises:
            ConfigurationError: the file cannot be opened, is not SQLite, or has a newer schema version.
            BackendUnavailableError: the file stayed locked past the busy timeout.
        """
        if self._writer is not None:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self.is_connected:  # another caller opened it while this one waited for the lock
                return
            name = f"worker-sqlite-{self.owner[:8]}"
            writer = Writer(f"{name}-w", self.where, self._after_commit)
            reader = Reader(f"{name}-r", self.where)

            path, busy, sync, where = self.path, self._busy, self._sync, self.where
            try:
                await writer.open(
                    lambda: retry_while_busy(
                        lambda: open_migrated(path, busy_timeout=busy, synchronous=sync, where=where), busy
                    )
                )
                await reader.open(
                    lambda: retry_while_busy(
                        lambda: open_connection(path, busy_timeout=busy, synchronous=sync, where=where), busy
                    )
                )
            except BaseException:
                await writer.close()
                await reader.close()
                raise
            self._hub.join(self._waiters)
            self._reader, self._writer = reader, writer

    @property
    def is_connected(self) -> bool:
        """Whether the file is open."""
        return self._writer is not None

    async def aclose(self) -> None:
        """Leave the node list, wake every waiter, close both connections and their threads. Idempotent."""
        if self._writer is None:
            return
        if self._node_info:
            with contextlib.suppress(WorkerError):
                await self.unregister_node()
        await self._waiters.aclose()
        self._hub.leave(self._waiters)
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        self._waiters = Waiters(self._data_version, self._results.existing, self._interval)
        await writer.close()
        if reader is not None:
            await reader.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _write(self, op: Op) -> Any:
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        return await self._writer.write(op)

    async def _read(self, op: Op) -> Any:
        if self._reader is None:
            await self.connect()
        assert self._reader is not None
        return await self._reader.call(op)

    def _after_commit(self, results: list[Any]) -> None:
        """In the writer thread after each commit: wake whoever the committed operations concern."""
        work = False
        ids: list[str] = []
        for result in results:
            if isinstance(result, Wake):
                work = work or result.work
                ids.extend(result.outcomes)
        self._hub.notify(work, ids)

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` for the dequeue share.

        Raises:
            ConfigurationError: an empty default queue or a weight below 1.
        """
        name: object = default_queue
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("default queue must not be empty")
        for queue, weight in weights.items():
            if not plain_int(weight, 1):
                raise ConfigurationError(f"queue weight for {queue!r} must be an int >= 1, got {weight!r}")
        self._default_queue = default_queue.strip()
        self._rr.weights = {(queue.strip() or self._default_queue): weight for queue, weight in weights.items()}

    # -- enqueue -----------------------------------------------------------------------------------

    async def enqueue(self, task: DurableTask) -> None:
        """Store ``task``, ready at ``run_at`` or now; wakes idle workers at once.

        Raises:
            InvalidTaskError: no id, no handler, a payload that is not bytes, a field of the wrong type.
            DurableTaskExistsError: the id is stored (ready, leased or dead-lettered), or a live task has the
                same idempotency key; ``ids`` names the rejected task.
        """
        row = task_row(task, self._default_queue, time.time())

        def op(db: Any) -> Wake:
            ops.raise_skipped(ops.enqueue_rows(db, [row]))
            return Wake(work=True)

        await self._write(op)

    async def enqueue_many(self, tasks: Sequence[DurableTask]) -> None:
        """Store every task of ``tasks`` in one transaction (``BatchEnqueueBackend``); all are checked first.

        Raises:
            InvalidTaskError: a task is invalid (nothing is stored).
            DurableTaskExistsError: some tasks were skipped (id stored, or repeated in the batch: the first copy
                wins; or an idempotency key held by a live task); ``ids`` lists one entry per skipped task.
        """
        if not tasks:
            return
        now = time.time()
        rows = [task_row(task, self._default_queue, now) for task in tasks]

        def op(db: Any) -> Wake:
            return Wake(work=True, skipped=ops.enqueue_rows(db, rows))

        done: Wake = await self._write(op)
        ops.raise_skipped(done.skipped)

    # -- dequeue -----------------------------------------------------------------------------------

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks for ``lease`` seconds in one transaction.

        Expired leases of every queue are requeued first; pauses, priorities, weights and queue weights apply
        (see the README). A task past its delivery limit or a row that cannot be decoded is dead-lettered.

        Raises:
            ConfigurationError: ``lease`` is not positive.
        """
        lease_s = positive_seconds(lease, "lease")
        limit = max(int(limit), 1)
        heartbeat = self._heartbeat(0) if self._node_fresh else None
        if heartbeat is None:
            # A read first: when nothing is due (every idle worker of every process is woken by each commit),
            # answer without taking the write lock. A stale answer only sends the caller to wait_for_work,
            # which sees the due task and returns at once.
            now = time.time()
            next_time = await self._read(lambda db: ops.next_event_time(db, now))
            if next_time is None or next_time > now:
                return []
        rr = ops.DequeueState(self._rr.queue, self._rr.credit, self._rr.weights)
        extra, ttl, node = self._extra, self._outcome_ttl, self.owner

        def op(db: Any) -> Wake:
            done = ops.dequeue(
                db, rr, time.time(), limit, lease_s, extra, heartbeat, ttl, node=node, dead_ttl=self._dead_ttl
            )
            return Wake(outcomes=done.outcomes, value=done)

        wake: Wake = await self._write(op)
        done: ops.Dequeued = wake.value
        self._rr.queue, self._rr.credit = rr.queue, rr.credit
        if heartbeat is not None:
            self._node_fresh = False
        for task_id, reason in done.dead:
            logger.error("durable task %s dead-lettered by dequeue: %s", task_id, reason)
        return done.leases

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may be ready, or after ``max_wait`` seconds at the latest (``WakeableBackend``).

        Woken at once by an enqueue, nack, release, resume or replay through any backend object on this file
        in this process; by another process's commit within ``wake_interval``; and when the earliest delayed
        task or lease expiry is due.
        """
        waiter = self._waiters.work_waiter()
        try:
            await self._waiters.arm()
            now = time.time()
            next_time = await self._read(lambda db: ops.next_event_time(db, now))
            timeout = max(float(max_wait), 0.0)
            if next_time is not None:
                if next_time <= now:
                    return
                timeout = min(timeout, next_time - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            self._waiters.discard(waiter)

    # -- settle ------------------------------------------------------------------------------------

    async def ack(self, lease: DurableTaskLease) -> None:
        """The task succeeded: delete it. Raises :class:`LeaseLostError` if the lease is not current."""
        await self._write(lambda db: ops.ack(db, lease))

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (attempts are kept).

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """

        def op(db: Any) -> Wake:
            now = time.time()
            ops.nack(db, lease, now + max(float(delay), 0.0), now)
            return Wake(work=True)

        await self._write(op)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error`` as its reason (and a ``FailureReason``'s type and traceback).

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._write(lambda db: ops.fail(db, lease, error, time.time(), self._dead_ttl))

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds.

        Raises:
            LeaseLostError: the lease is not current.
            ConfigurationError: ``duration`` is not positive.
        """
        seconds = positive_seconds(duration, "lease duration")
        until = time.time() + seconds
        await self._write(lambda db: ops.extend(db, lease, until))
        lease.expires_at = until

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one transaction (``BatchExtendBackend``), the node's heartbeat with them.

        Raises:
            ConfigurationError: ``duration`` is not positive.
        """
        seconds = positive_seconds(duration, "lease duration")
        if not leases and not self._node_info:
            return []
        heartbeat = self._heartbeat(seconds) if self._node_info else None
        now = time.time()
        until = now + seconds
        held: list[bool] = await self._write(lambda db: ops.extend_many(db, leases, until, now, heartbeat))
        self._node_fresh = False if heartbeat is not None else self._node_fresh
        for lease, ok in zip(leases, held, strict=True):
            if ok:
                lease.expires_at = until
        return held

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make leased tasks ready now, the delivery not counted (``ReleasableBackend``); lost ones are skipped."""
        if not leases:
            return
        batch = list(leases)

        def op(db: Any) -> Wake:
            return Wake(work=ops.release(db, batch, time.time()) > 0)

        await self._write(op)

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the FAILED outcome of a task the dequeue dead-letters itself for ``ttl`` seconds (``None``: none).

        ``OutcomeConfigurableBackend``: the manager passes its ``durable_result_ttl`` at start; until then
        such outcomes are kept for an hour (``DEFAULT_RESULT_TTL``).
        """
        self._outcome_ttl = float(ttl) if ttl is not None and ttl > 0 and math.isfinite(ttl) else None

    # -- pause -------------------------------------------------------------------------------------

    async def pause(self, queue: str | None = None) -> None:
        """Stop handing out tasks (of one queue, or of all when ``queue`` is ``None``)."""
        name = None if queue is None else (queue.strip() or self._default_queue)
        await self._write(lambda db: ops.set_paused(db, name, True))

    async def resume(self, queue: str | None = None) -> None:
        """Undo :meth:`pause` (for one queue, or the global pause when ``queue`` is ``None``); wakes workers."""
        name = None if queue is None else (queue.strip() or self._default_queue)

        def op(db: Any) -> Wake:
            ops.set_paused(db, name, False)
            return Wake(work=True)

        await self._write(op)

    # -- node registry (NodeRegistryBackend) -------------------------------------------------------

    def register_node(self, info: Mapping[str, object], held: Callable[[], int]) -> None:
        """Heartbeat as a worker node from now on: at the next dequeue, then with every lease renewal."""
        self._node_info = {**info, "weights": dict(self._rr.weights)}
        self._node_held = held
        self._node_fresh = True

    async def unregister_node(self) -> None:
        """Leave the node list now."""
        if not self._node_info:
            return
        self._node_info = {}
        self._node_fresh = False
        node = self.owner
        await self._write(lambda db: db.execute("DELETE FROM nodes WHERE id = ?", (node,)))

    def _heartbeat(self, lease_s: float) -> tuple[str, str, float]:
        held = self._node_held() if self._node_held is not None else 0
        ttl = max(2 * lease_s, 60.0 if lease_s <= 0 else 1.0)
        return self.owner, ops.node_info(self._node_info, self.owner, int(held)), ttl

    # -- results (ResultStoreBackend) ----------------------------------------------------------------

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and keep ``outcome`` for ``ttl`` seconds in the same transaction.

        Raises:
            LeaseLostError: the lease is not current (nothing changed, nothing kept).
        """
        await self._results.settle_with(outcome, positive_seconds(ttl, "result ttl"), lambda db: ops.ack(db, lease))

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` and keep ``outcome`` for ``ttl`` seconds in the same transaction.

        Raises:
            LeaseLostError: the lease is not current (nothing changed, nothing kept).
        """
        seconds = positive_seconds(ttl, "result ttl")
        await self._results.settle_with(
            outcome, seconds, lambda db: ops.fail(db, lease, error, time.time(), self._dead_ttl)
        )

    async def get_outcome(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The kept outcome of ``task_id``, or ``None`` (unknown, not finished, or expired).

        Raises:
            PayloadError: the stored outcome does not decode (corrupt or foreign data).
        """
        return await self._results.get(task_id)

    async def wait_outcome(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` once kept (at once if it is); ``None`` after ``max_wait`` seconds."""
        return await self._results.wait(task_id, max_wait)

    async def recent_outcomes(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` outcomes of ``queue`` (at most ``recent_outcomes``), newest first; bad ones are skipped."""
        return await self._results.recent(queue.strip() or self._default_queue, min(int(limit), self._recent_limit))

    async def _data_version(self) -> int:
        row = await self._read(lambda db: db.execute("PRAGMA data_version").fetchone())
        return int(row[0])

    # -- schedules (worker_core.schedules.ScheduleBackend; worker_sqlite/_schedules.py) ------------

    async def enqueue_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, *, node: str = ""
    ) -> TickResult:
        """Store ``task`` for one tick unless its marker row exists or the schedule is paused (one transaction)."""
        return await self._schedules.enqueue_tick(task, schedule, tick_ms, ttl, node)

    async def publish_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        """Record the schedules a node runs (table ``schedules``)."""
        await self._schedules.publish(records)

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule some node published, by name."""
        return await self._schedules.listed()

    async def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and last event of each schedule (one read transaction)."""
        return await self._schedules.states(names)

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule on every process using this file."""
        await self._schedules.set_paused(name, paused)

    async def request_schedule_run(self, name: str) -> None:
        """Ask for one run of ``name`` now; exactly one process's next poll takes it."""
        await self._schedules.request_run(name)

    async def take_schedule_runs(self, names: Sequence[str]) -> list[str]:
        """Take the run requests pending for ``names`` (one taker per request)."""
        return await self._schedules.take_runs(names)

    async def record_schedule_event(self, event: ScheduleEvent, limit: int) -> None:
        """Push an event on the schedule's list, keeping the newest ``limit`` (at most 1,000)."""
        await self._schedules.record(event, limit)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of a schedule, newest first."""
        return await self._schedules.events(name, limit)
