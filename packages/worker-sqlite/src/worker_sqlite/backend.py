"""``SqliteDurableBackend``: durable tasks in one SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

from worker_core.durable.outcomes import DEFAULT_RECENT_OUTCOMES, TaskOutcome
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
from ._conn import Op
from ._control import QueueControl
from ._leases import Leases
from ._nodes import Node
from ._ops import Wake
from ._results import Results
from ._rows import queue_name, task_row
from ._schedules import SqliteSchedules
from ._store import Store
from ._url import check_synchronous, parse_url, plain_int, resolve_path
from ._url import seconds as positive_seconds

__all__ = ("DEFAULT_BUSY_TIMEOUT", "DEFAULT_WAKE_INTERVAL", "SqliteDurableBackend")

#: Seconds a write waits for another process's transaction before it raises BackendUnavailableError.
DEFAULT_BUSY_TIMEOUT: Final = 5.0
#: Seconds between two ``PRAGMA data_version`` reads while something waits (cross-process wake-up).
DEFAULT_WAKE_INTERVAL: Final = 0.025


class SqliteDurableBackend:
    """The durable contract in an SQLite file (WAL mode): many processes of one machine share it safely.

    Args:
        path: the database file (relative paths are made absolute now); created with its schema on first open.
        default_queue: queue of tasks enqueued with ``queue=""`` (kept unless the ``TaskManager`` is given its
            own ``default_queue``).
        queue_weights: dequeue share per queue, weighted round robin carried across calls (missing queues weigh 1).
        extra_deliveries: deliveries beyond ``retries + 1`` before a task is dead-lettered ("delivery limit").
        recent_outcomes: outcomes ``recent_outcomes()`` lists per queue at most.
        dead_ttl: seconds a dead-lettered task is kept (7 days; ``None`` or ``0``: forever); the transaction that
            dead-letters a task deletes up to 100 of the oldest dead tasks that failed longer ago.
        busy_timeout: seconds a write waits for another connection's transaction, then BackendUnavailableError.
        synchronous: ``PRAGMA synchronous``: ``full`` (default: a returned write survives power loss), ``normal``
            (survives a crash of the process; a power loss may drop the last commits), ``off``, ``extra``.
        wake_interval: seconds between ``PRAGMA data_version`` reads while a worker or a result waiter idles.
        create: create a missing file (the default); ``False``: a ConfigurationError at open (the admin's choice).

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
        create: bool = True,
    ) -> None:
        self.path = resolve_path(path)  # type: ignore[arg-type]
        self.where = f"sqlite at {self.path}"
        if not plain_int(extra_deliveries, 0):
            raise ConfigurationError(f"extra_deliveries must be an int >= 0, got {extra_deliveries!r}")
        if not plain_int(recent_outcomes, 1):
            raise ConfigurationError(f"recent_outcomes must be an int >= 1, got {recent_outcomes!r}")
        self._recent_limit = recent_outcomes
        dead_ttl_s = dead_ttl_seconds(dead_ttl)
        busy = positive_seconds(busy_timeout, "busy_timeout")
        sync = check_synchronous(synchronous)
        interval = positive_seconds(wake_interval, "wake_interval")
        self.owner = str(uuid.uuid4())
        self._default_queue = "default"
        self._results = Results(self._write, self._read, lambda: self._store.waiters)
        self._store = Store(
            self.path,
            name=f"worker-sqlite-{self.owner[:8]}",
            where=self.where,
            busy_timeout=busy,
            synchronous=sync,
            interval=interval,
            existing=self._results.existing,
            create=create,
        )
        self._node = Node(self.owner, self._write)
        self._leases = Leases(
            self._write,
            self._read,
            lambda: self._store.waiters,
            self._node,
            extra_deliveries=extra_deliveries,
            dead_ttl=dead_ttl_s,
        )
        self._control = QueueControl(self._write, self._read, lambda: self._default_queue)
        self._schedules = SqliteSchedules(self._write, self._read, lambda: self._default_queue)
        self.configure_queues(default_queue, queue_weights or {})

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
        await self._store.open()

    @property
    def is_connected(self) -> bool:
        """Whether the file is open."""
        return self._store.is_open

    async def aclose(self) -> None:
        """Leave the node list, wake every waiter, close both connections and their threads. Idempotent."""
        if not self._store.is_open:
            return
        if self._node.registered:
            with contextlib.suppress(WorkerError):
                await self.unregister_node()
        await self._store.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _write(self, op: Op) -> Any:
        return await self._store.write(op)

    async def _read(self, op: Op) -> Any:
        return await self._store.read(op)

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
        self._leases.set_weights({queue_name(queue, self._default_queue): weight for queue, weight in weights.items()})

    def queue_settings(self) -> tuple[str, Mapping[str, int]]:
        """The default queue and weights in use (``QueueSettingsBackend``: a manager given none keeps them)."""
        return self._default_queue, self._leases.weights

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
        return await self._leases.dequeue(limit, lease)

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may be ready, or after ``max_wait`` seconds at the latest (``WakeableBackend``).

        Woken at once by an enqueue, nack, release, resume or replay through any backend object on this file
        in this process; by another process's commit within ``wake_interval``; and when the earliest delayed
        task or lease expiry is due.
        """
        await self._leases.wait_for_work(max_wait)

    # -- settle ------------------------------------------------------------------------------------

    async def ack(self, lease: DurableTaskLease) -> None:
        """The task succeeded: delete it. Raises :class:`LeaseLostError` if the lease is not current."""
        await self._leases.ack(lease)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (attempts are kept).

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._leases.nack(lease, delay)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error`` as its reason (and a ``FailureReason``'s type and traceback).

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._leases.fail(lease, error)

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds.

        Raises:
            LeaseLostError: the lease is not current.
            ConfigurationError: ``duration`` is not positive.
        """
        await self._leases.extend(lease, duration)

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one transaction (``BatchExtendBackend``), the node's heartbeat with them.

        Raises:
            ConfigurationError: ``duration`` is not positive.
        """
        return await self._leases.extend_many(leases, duration)

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make leased tasks ready now, the delivery not counted (``ReleasableBackend``); lost ones are skipped."""
        await self._leases.release(leases)

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the FAILED outcome of a task the dequeue dead-letters itself for ``ttl`` seconds (``None``: none).

        ``OutcomeConfigurableBackend``: the manager passes its ``durable_result_ttl`` at start; until then
        such outcomes are kept for an hour (``DEFAULT_RESULT_TTL``).
        """
        self._leases.configure_outcomes(ttl)

    # -- pause -------------------------------------------------------------------------------------

    async def pause(self, queue: str | None = None) -> None:
        """Stop handing out tasks (of one queue, or of all when ``queue`` is ``None``)."""
        await self._control.set_paused(queue, True)

    async def resume(self, queue: str | None = None) -> None:
        """Undo :meth:`pause` (for one queue, or the global pause when ``queue`` is ``None``); wakes workers."""
        await self._control.set_paused(queue, False)

    # -- node registry (NodeRegistryBackend) -------------------------------------------------------

    def register_node(self, info: Mapping[str, object], held: Callable[[], int]) -> None:
        """Heartbeat as a worker node from now on: at the next dequeue, then with every lease renewal."""
        self._node.register(info, held, self._leases.weights)

    async def unregister_node(self) -> None:
        """Leave the node list now."""
        await self._node.unregister()

    # -- results (ResultStoreBackend) ----------------------------------------------------------------

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and keep ``outcome`` for ``ttl`` seconds in the same transaction.

        Raises:
            LeaseLostError: the lease is not current (nothing changed, nothing kept).
        """
        await self._results.settle_with(outcome, positive_seconds(ttl, "result ttl"), self._leases.ack_op(lease))

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` and keep ``outcome`` for ``ttl`` seconds in the same transaction.

        Raises:
            LeaseLostError: the lease is not current (nothing changed, nothing kept).
        """
        seconds = positive_seconds(ttl, "result ttl")
        await self._results.settle_with(outcome, seconds, self._leases.fail_op(lease, error))

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
        return await self._results.recent(queue_name(queue, self._default_queue), min(int(limit), self._recent_limit))

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
