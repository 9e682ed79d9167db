"""``PostgresDurableBackend``: durable tasks in PostgreSQL, claimed with ``SKIP LOCKED``, fenced, wakeable."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import psycopg
from worker_core.durable.outcomes import DEFAULT_RECENT_OUTCOMES, TaskOutcome
from worker_core.durable.types import DEFAULT_DEAD_TTL, DEFAULT_EXTRA_DELIVERIES, DurableTask, DurableTaskLease
from worker_core.errors import ConfigurationError, WorkerError
from worker_core.schedules.types import ScheduleEvent, ScheduleRecord, ScheduleState, TickResult

from . import _schema
from ._claim import Claimer
from ._connect import check_options, parse_url, positive_seconds, queue_settings
from ._control import QueueControl
from ._enqueue import Enqueuer
from ._listen import Listener
from ._nodes import NodeRegistration
from ._pool import Pool
from ._results import Results
from ._rows import normalize_queue
from ._schedules import PostgresSchedules
from ._settle import CLEANUP_BATCH, Settler, prune_params
from ._sql import Statements

__all__ = ("DEFAULT_SCHEMA", "PostgresDurableBackend")

#: The schema that holds the tables when none is given (``?schema=``).
DEFAULT_SCHEMA = "worker"
DEFAULT_COMMAND_TIMEOUT = 30.0  # seconds one operation may take (a frozen server holds no caller forever)


class PostgresDurableBackend:
    """Durable tasks in one PostgreSQL schema, shared by any number of worker processes and machines.

    Args:
        conninfo: a libpq connection string or ``postgresql://`` URL (without this package's query options).
        schema: the schema holding the tables (``worker``); create or upgrade it with :meth:`migrate`.
        default_queue: the queue of tasks that name none (a TaskManager given its own ``default_queue`` sets it).
        queue_weights: share of claims per queue (weighted round robin, carried over between calls).
        extra_deliveries: deliveries beyond ``retries + 1`` without a settle before the claim dead-letters the
            task with reason ``"delivery limit: ..."``.
        queues: lease only from these queues (``None``: every queue); enqueue is not limited.
        listen: ``True`` (default) wakes idle workers by LISTEN/NOTIFY; ``False`` polls (PgBouncer in
            transaction pooling mode breaks LISTEN).
        prepare: use server-side prepared statements (psycopg's default threshold); ``False`` for PgBouncer
            before 1.21 in transaction mode.
        pool_min, pool_max: connections of the pool.
        pool_timeout: seconds to wait for a connection before raising ``BackendUnavailableError``.
        command_timeout: seconds one operation (a connection from the pool and its statements) may take before
            it is cancelled with ``BackendUnavailableError`` (30; ``None`` or ``0``: no limit): a server that
            does not answer (frozen, a network dropping packets) holds no caller forever. ``migrate`` has none.
        poll_interval: seconds between re-checks of ``wait_outcome`` when LISTEN is off or down.
        recent_outcomes: outcomes ``recent_outcomes`` lists per queue at most.
        dead_ttl: seconds a dead-lettered task is kept (7 days; ``None`` or ``0``: forever); the statement that
            dead-letters a task deletes up to 100 of the oldest dead tasks that failed longer ago.
        where: how errors name the server (never with a password).

    Every state change is one statement. A lease carries a fencing token: ``ack``/``nack``/``fail``/``extend``
    with a token that is no longer current raise :class:`~worker_core.errors.LeaseLostError` and change nothing.
    """

    supports_idempotency_keys: bool = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        default_queue: str = "default",
        queue_weights: Mapping[str, int] | None = None,
        extra_deliveries: int = DEFAULT_EXTRA_DELIVERIES,
        queues: Sequence[str] | None = None,
        listen: bool = True,
        prepare: bool = True,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 5.0,
        command_timeout: float | None = DEFAULT_COMMAND_TIMEOUT,
        poll_interval: float = 0.5,
        recent_outcomes: int = DEFAULT_RECENT_OUTCOMES,
        dead_ttl: float | None = DEFAULT_DEAD_TTL,
        where: str = "postgresql",
    ) -> None:
        if not conninfo or not isinstance(conninfo, str):
            raise ConfigurationError("a PostgreSQL connection string is required")
        self.schema = _schema.valid_schema(schema)
        check_options(extra_deliveries, pool_min, pool_max, recent_outcomes, queues)
        self.queues: tuple[str, ...] | None = None if queues is None else tuple(normalize_queue(q) for q in queues)
        self.listen = bool(listen)
        self._kwargs: dict[str, Any] = {} if prepare else {"prepare_threshold": None}
        timeout_s = positive_seconds(pool_timeout, "pool_timeout")
        command_s = None if command_timeout in (None, 0) else positive_seconds(command_timeout, "command_timeout")
        poll_s = positive_seconds(poll_interval, "poll_interval")
        self._prune = prune_params(dead_ttl)
        self.where = where
        self.owner = str(uuid.uuid4())
        self._sql = Statements.for_schema(self.schema)
        wake, done = _schema.channels(self.schema)
        self._listener = Listener(conninfo, wake, done, self._kwargs)
        self._pool = Pool(
            conninfo,
            self.schema,
            where,
            size=(pool_min, pool_max),
            timeout=timeout_s,
            kwargs=self._kwargs,
            command_timeout=command_s,
        )
        self._default_queue = "default"
        self._enqueuer = Enqueuer(self._pool, self._sql)
        self._results = Results(
            self._pool, self._sql, self._listener, listen=self.listen, poll=poll_s, limit=recent_outcomes
        )
        self._node = NodeRegistration(self.owner, self._pool, self._sql)
        self._settler = Settler(self._pool, self._sql, self._node, self._prune)
        self._claimer = Claimer(
            self._pool,
            self._sql,
            self._listener,
            self._results,
            self._settler,
            owner=self.owner,
            extra_deliveries=extra_deliveries,
            queues=self.queues,
            listen=self.listen,
            pool_timeout=timeout_s,
            prune=self._prune,
        )
        self._control = QueueControl(self._pool, self._sql, self.schema, wake, lambda: self._default_queue)
        self._schedules = PostgresSchedules(self._pool, self.schema, self._sql, lambda: self._default_queue)
        self.configure_queues(default_queue, queue_weights or {})

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A backend for a ``postgresql://`` or ``postgres://`` URL; connects lazily (see :meth:`connect`).

        The query may set ``schema``, ``listen``, ``prepare``, ``pool_min``, ``pool_max``, ``poll_interval``,
        ``command_timeout`` (``0``: none),
        ``default_queue``, ``extra_deliveries``, ``recent_outcomes`` and ``queues`` (``a,b``); the rest goes
        to libpq. Keyword ``options`` win over the query.

        Raises:
            ConfigurationError: bad URL or option. No connection is made here.
        """
        parsed = parse_url(url)
        kwargs = {**parsed.backend, **options}
        try:
            return cls(parsed.conninfo, where=parsed.where, **kwargs)
        except TypeError as exc:
            raise ConfigurationError(f"PostgresDurableBackend: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the pool and check the schema version once (never migrates).

        Every operation calls this first, so calling it is optional; call it at start to fail early.

        Raises:
            ConfigurationError: the schema is missing, older or newer than this package (says how to migrate),
                or the credentials are refused.
            BackendUnavailableError: the server cannot be reached.
        """
        await self._pool.check()

    @property
    def conninfo(self) -> str:
        """The libpq connection string (the URL without this package's options) for your own connections."""
        return self._pool.conninfo

    @property
    def is_connected(self) -> bool:
        """Whether the schema check passed (and :meth:`aclose` was not called since)."""
        return self._pool.checked

    def _connection(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """A pooled autocommit connection (errors translated)."""
        return self._pool.connection()

    async def migrate(self) -> int:
        """Create or upgrade this backend's schema (idempotent, serialised by an advisory lock); its version."""
        return await self._pool.migrate()

    async def aclose(self) -> None:
        """Leave the node list, stop the LISTEN connection and close the pool."""
        if self._node.registered and self._pool.checked:
            with contextlib.suppress(WorkerError):
                await self.unregister_node()
        await self._settler.drain()
        await self._listener.aclose()
        await self._pool.aclose()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` to share claims among queues."""
        self._default_queue, clean = queue_settings(default_queue, weights)
        self._claimer.configure_weights(clean)

    def queue_settings(self) -> tuple[str, Mapping[str, int]]:
        """The default queue and weights in use (``QueueSettingsBackend``: a manager given none keeps them)."""
        return self._default_queue, self._claimer.weights

    # -- enqueue -----------------------------------------------------------------------------------
    async def enqueue(self, task: DurableTask, *, connection: psycopg.AsyncConnection[Any] | None = None) -> None:
        """Store ``task``, ready at ``run_at`` or now; idle workers are woken when it commits.

        With ``connection`` (your own psycopg ``AsyncConnection``, in a transaction or not) the insert runs
        there: the task exists only once you commit, and a rollback leaves nothing (the outbox pattern).

        Raises:
            DurableTaskExistsError: a task with this id exists (ready, leased or dead-lettered), or a live task
                (ready, delayed or leased) holds its idempotency key; ``ids`` names the rejected task.
            InvalidTaskError: no id, no handler, no encoded payload, or a value PostgreSQL cannot store.
        """
        await self._enqueuer.one(task, self._default_queue, connection)

    async def enqueue_many(
        self, tasks: Sequence[DurableTask], *, connection: psycopg.AsyncConnection[Any] | None = None
    ) -> None:
        """Store many tasks in one statement (``BatchEnqueueBackend``); all are checked before any is written.

        A task whose id is stored, or repeats an earlier task of the batch (the first copy wins), or whose
        idempotency key a live task holds, is skipped; the others are stored. ``connection`` as in :meth:`enqueue`.

        Raises:
            DurableTaskExistsError: some tasks were skipped; ``ids`` has one entry per skipped task, in order.
            InvalidTaskError: a task is malformed (nothing was stored).
        """
        await self._enqueuer.many(tasks, self._default_queue, connection)

    # -- claim -------------------------------------------------------------------------------------
    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks or expired leases for ``lease`` seconds, in one statement.

        Honours the global pause and paused queues, queue weights (round robin), priority then weight. A task
        past its delivery limit is dead-lettered instead, a corrupt row is dead-lettered with its reason.

        Raises:
            ConfigurationError: ``lease`` is not positive.
        """
        return await self._claimer.dequeue(limit, lease)

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the outcomes of tasks this backend dead-letters itself for ``ttl`` seconds (``None``: none).

        Those are the tasks past their delivery limit and corrupt rows (``OutcomeConfigurableBackend``).
        """
        self._claimer.configure_outcomes(ttl)

    async def wait_for_work(self, max_wait: float) -> None:
        """Block until work may be ready, or ``max_wait`` seconds at most (``WakeableBackend``).

        Returns early on a NOTIFY (an enqueue, nack, release or replay committed) or when the next delayed task
        or lease expiry seen by the last claim is due. With ``listen=False`` it sleeps until then.
        """
        await self._claimer.wait_for_work(max_wait)

    # -- settle ------------------------------------------------------------------------------------
    async def ack(self, lease: DurableTaskLease) -> None:
        """The task succeeded: delete it (its idempotency key is free again). Concurrent acks share a statement.

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._settler.ack(lease)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (negative: now); attempts are kept.

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._settler.nack(lease, delay)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error`` (and a ``FailureReason``'s error type and traceback).

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
        """
        await self._settler.fail(lease, error)

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds.

        Raises:
            LeaseLostError: the lease is not current (nothing changed).
            ConfigurationError: ``duration`` is not positive.
        """
        await self._settler.extend(lease, duration)

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one statement (``BatchExtendBackend``), with this node's heartbeat.

        The same statement deletes up to 500 expired outcomes. Per lease, whether it is still held.
        """
        return await self._settler.extend_many(leases, duration)

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Hand leases back now (graceful shutdown), the delivery not counted; lost leases are skipped."""
        await self._settler.release(leases)

    # -- nodes -------------------------------------------------------------------------------------
    def register_node(self, info: Mapping[str, object], held: Callable[[], int]) -> None:
        """Heartbeat as a worker node from now on (``NodeRegistryBackend``), in :meth:`extend_many`."""
        self._node.register(info, held, self.queues, self._claimer.weights)

    async def unregister_node(self) -> None:
        """Leave the node list now (``NodeRegistryBackend``)."""
        await self._node.unregister()

    # -- pause -------------------------------------------------------------------------------------
    async def pause(self, queue: str | None = None) -> None:
        """Stop handing out tasks (of one queue, or of every queue when ``queue`` is ``None``), on every node."""
        await self._control.set_paused(queue, True)

    async def resume(self, queue: str | None = None) -> None:
        """Undo :meth:`pause` (for one queue, or the global pause); wakes idle workers."""
        await self._control.set_paused(queue, False)

    # -- result store (ResultStoreBackend) ---------------------------------------------------------
    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and store ``outcome`` for ``ttl`` seconds in the same statement (NOTIFY wakes waiters).

        Raises:
            LeaseLostError: the lease is not current (nothing changed or stored).
        """
        await self._settler.ack_with_outcome(lease, outcome, ttl)

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` (dead-letter) and store ``outcome`` for ``ttl`` seconds in the same statement.

        Raises:
            LeaseLostError: the lease is not current (nothing changed or stored).
        """
        await self._settler.fail_with_outcome(lease, error, outcome, ttl)

    async def get_outcome(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The stored outcome of ``task_id``, or ``None`` (unknown, not finished, or expired).

        Raises:
            PayloadError: the stored outcome does not decode (corrupt or foreign data).
        """
        return await self._results.get(task_id)

    async def wait_outcome(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` as soon as it is stored (at once if it is); ``None`` after ``max_wait`` s.

        Woken by the NOTIFY the storing statement's trigger sends at commit; re-checks every ``poll_interval``
        while LISTEN is off or down. ``max_wait=None`` waits without a limit.
        """
        return await self._results.wait(task_id, max_wait)

    async def recent_outcomes(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` (at most ``recent_outcomes``) unexpired outcomes of ``queue``, newest first.

        A row that does not decode is left out (logged).
        """
        return await self._results.recent(normalize_queue(queue, self._default_queue), limit)

    async def cleanup_outcomes(self, limit: int = CLEANUP_BATCH) -> int:
        """Delete up to ``limit`` expired outcomes now; how many (the heartbeat does this on its own)."""
        return await self._results.cleanup(limit)

    def statistics(self) -> dict[str, Any]:
        """Debugging figures: round-robin position, LISTEN state, outcome waiters."""
        listener = {"listening": self._listener.listening, "outcome_waits": self._listener.waiting()}
        return {**self._claimer.statistics(), **listener, "pending_acks": len(self._settler)}

    # -- schedules (worker_core.schedules.ScheduleBackend; worker_postgres/_schedules.py) ----------
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
        """Paused flag, last tick and last event of each schedule (one statement)."""
        return await self._schedules.states(names)

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule on every node."""
        await self._schedules.set_paused(name, paused)

    async def request_schedule_run(self, name: str) -> None:
        """Ask for one run of ``name`` now; exactly one node's next poll takes it."""
        await self._schedules.request_run(name)

    async def take_schedule_runs(self, names: Sequence[str]) -> list[str]:
        """Take the run requests pending for ``names`` (``DELETE ... RETURNING``: one taker per request)."""
        return await self._schedules.take_runs(names)

    async def record_schedule_event(self, event: ScheduleEvent, limit: int) -> None:
        """Push an event on the schedule's list, keeping the newest ``limit`` (at most 1,000)."""
        await self._schedules.record(event, limit)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of a schedule, newest first."""
        return await self._schedules.events(name, limit)
