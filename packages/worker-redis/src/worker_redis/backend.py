"""``RedisDurableBackend``: go-worker's Redis durable backend (key layout: the README), batched, fenced, wakeable."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Self

from redis import exceptions as rex
from worker_core.durable.outcomes import DEFAULT_RECENT_OUTCOMES, DEFAULT_RESULT_TTL, TaskOutcome, dead_letter_outcome
from worker_core.durable.types import (
    DEAD_PRUNE_LIMIT,
    DEFAULT_DEAD_TTL,
    DEFAULT_EXTRA_DELIVERIES,
    DurableTask,
    DurableTaskLease,
    dead_ttl_seconds,
    lease_token,
)
from worker_core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DurableTaskExistsError,
    LeaseLostError,
    PartialEnqueueError,
    PayloadError,
    WorkerError,
)
from worker_core.schedules.types import ScheduleEvent, ScheduleRecord, ScheduleState, TickResult

from ._acks import AckBatcher, PendingAck
from ._connect import make_client, parse_url
from ._errors import redis_errors, translate
from ._leader import LeaderLock
from ._moved import store_moved_outcomes
from ._outcomes import OutcomeWaiters
from ._records import TASK_WIDTH, TRACEBACK_LIMIT, enqueue_args, now_ms, parse_leases
from ._schedules import RedisSchedules
from .keys import DEFAULT_PREFIX, DEFAULT_QUEUE, Keys, normalize_queue
from .scripts import BackendScripts

__all__ = ("WAKE_CAP", "RedisDurableBackend")

logger = logging.getLogger(__name__)

#: Wake-up tokens kept in ``P:wake`` at most (the admin scripts use the same cap).
WAKE_CAP = 64
_ENQUEUE_CHUNK = 500  # tasks per enqueue script call: keeps each call short, so Redis never stalls
#: Leases one dequeue call hands out at most (a bigger ``limit`` is cut to it): keeps each script call short, and
#: within what Lua's ``unpack`` takes (the script records the leased ids in one RPUSH).
MAX_DEQUEUE = 1000
_MAX_BLOCK_S = 5.0  # longest single BLPOP, well under the client's socket timeout
_DEFAULT_LEASE_S = 30.0
_REDIS_ERRORS = (rex.RedisError, OSError, TimeoutError)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class RedisDurableBackend:
    """Durable tasks in Redis with go-worker's key layout, so go-worker and this package share queues.

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` with
            ``decode_responses=False`` (payloads are bytes). :meth:`from_url` builds one.
        prefix: the deployment's key prefix; wrapped in a hash tag (``{go-worker}``) so that every key
            of a script lives in one Cluster slot. A stray brace is a :class:`ConfigurationError`.
        default_queue: the queue of tasks that name none (kept unless the TaskManager is given its own).
        queue_weights: share of dequeues per queue (smooth weighted round robin, effective on every
            dequeue call, not only inside one batch as in go-worker); a missing queue weighs 1.
        batch_size: go-worker's scan window: due (and expired) entries one queue inspects per call.
        global_rate_limit: ``(rate per second, burst)``: a cluster-wide token bucket shared by every node
            (go-worker's key ``<prefix>:global_rate``); tokens are spent only on tasks actually leased.
        leader_lock: seconds; when set, only the node holding the lock ``<prefix>:leader`` dequeues. The
            lock is renewed by a background task every third of this, independently of dequeue calls.
        extra_deliveries: deliveries a task may have beyond ``retries + 1`` without being settled (its worker
            died, or lost the lease) before the dequeue script dead-letters it with reason "delivery limit".
        queues: lease only from these queues (``None``: from every queue); enqueue is not limited.
        recent_outcomes: finished tasks listed per queue at most (``P:recent:<queue>``, result store).
        dead_ttl: seconds a dead-lettered task is kept (7 days; ``None`` or ``0``: forever). The script that
            dead-letters a task also deletes up to 100 of the oldest dead tasks that failed longer ago (README).
        where: how errors name the server (``redis at host:port``); never includes a password.

    Every state change is one Lua script (``worker_redis/lua``). A lease carries a fencing token:
    ``ack``/``nack``/``fail``/``extend``/``release`` of a lease that expired and was handed out again
    raise :class:`~worker_core.errors.LeaseLostError` and change nothing.

    It is a ``ScheduleBackend``: durable schedules enqueue each tick once across nodes (README, "Schedules").
    It is a result store (``ResultStoreBackend``): ``ack_with_outcome`` / ``fail_with_outcome`` store the
    outcome in the settling script call itself, and ``wait_outcome`` is woken through one shared pub/sub
    connection (see the README's "Result store").
    """

    #: ``DurableTask.idempotency_key`` is enforced (``IdempotencyKeyBackend``): ``P:idem:<key>`` names the task
    #: that took it, and enqueue.lua refuses another while that task is ready, delayed or leased.
    supports_idempotency_keys = True

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        default_queue: str = DEFAULT_QUEUE,
        queue_weights: Mapping[str, int] | None = None,
        batch_size: int = 50,
        global_rate_limit: tuple[float, int] | None = None,
        leader_lock: float | None = None,
        extra_deliveries: int = DEFAULT_EXTRA_DELIVERIES,
        queues: Sequence[str] | None = None,
        recent_outcomes: int = DEFAULT_RECENT_OUTCOMES,
        dead_ttl: float | None = DEFAULT_DEAD_TTL,
        where: str = "redis",
    ) -> None:
        if client is None:
            raise ConfigurationError("redis client is required")
        if not isinstance(prefix, str):
            raise ConfigurationError("redis prefix must be a string")
        self.keys = Keys.for_prefix(prefix)
        if not _positive_int(batch_size):
            raise ConfigurationError(f"batch_size must be a positive int, not {batch_size!r}")
        self._batch = batch_size
        self._rate: tuple[float, int] | None = None
        if global_rate_limit is not None:
            rate, burst = global_rate_limit
            if not (rate > 0 and math.isfinite(rate)) or int(burst) <= 0:
                raise ConfigurationError(f"global_rate_limit needs rate > 0 and burst >= 1, not {global_rate_limit!r}")
            self._rate = (float(rate), int(burst))
            self._rate_ttl_ms = max(int(2 * self._rate[1] / self._rate[0] * 1000), 1000)
        if leader_lock is not None and not (leader_lock > 0 and math.isfinite(leader_lock)):
            raise ConfigurationError(f"leader_lock must be a positive number of seconds, not {leader_lock!r}")
        extra: object = extra_deliveries
        if (not _positive_int(extra) and extra != 0) or isinstance(extra, bool):
            raise ConfigurationError(f"extra_deliveries must be an int >= 0, not {extra_deliveries!r}")
        self._extra = extra_deliveries
        if queues is not None and (isinstance(queues, str) or not all(isinstance(q, str) for q in queues)):
            raise ConfigurationError(f"queues must be a sequence of queue names, not {queues!r}")
        self.queues: tuple[str, ...] | None = None if queues is None else tuple(normalize_queue(q) for q in queues)
        if not _positive_int(recent_outcomes):
            raise ConfigurationError(f"recent_outcomes must be a positive int, not {recent_outcomes!r}")
        self._recent_limit = recent_outcomes
        ttl = dead_ttl_seconds(dead_ttl)
        self._dead_args = (0 if ttl is None else max(1, int(ttl * 1000)), DEAD_PRUNE_LIMIT)
        self._outcome_ttl_ms = _ttl_ms(DEFAULT_RESULT_TTL)  # of tasks the dequeue script dead-letters itself
        self._node_info: dict[str, object] = {}  # set by register_node: this node heartbeats
        self._node_held: Any = None
        self._backlog: dict[str, tuple[int, float]] = {}
        self.where = where
        self.owner = str(uuid.uuid4())
        self._default_queue = DEFAULT_QUEUE
        self._weights: dict[str, int] = {}
        self.configure_queues(default_queue, queue_weights or {})
        self._p = self.keys.prefix + ":"
        self._leader = LeaderLock(self._leader_call, leader_lock) if leader_lock else None
        self._next_ms = -1
        self._acks = AckBatcher(self._send_acks)
        self._owns_client = False
        self._auto_cluster = False
        self._url = ""
        self._client_options: dict[str, Any] = {}
        self._connected = False
        self._connect_lock: asyncio.Lock | None = None
        self._bind(client)
        self._waiters = OutcomeWaiters(
            self._pubsub_connection, self.get_outcome, self._done_channel, where, refresh=self._refresh_slots
        )
        self._schedules = RedisSchedules(
            self.keys,
            self._p,
            where,
            lambda: self.client,
            lambda name: getattr(self._s, name),
            self.connect,
            lambda: self._default_queue,
        )

    def _bind(self, client: Any) -> None:
        self.client = client
        self._s = BackendScripts.bind(client)
        k = self.keys
        self._enqueue_keys = (k.queues, k.wake)
        self._dequeue_keys = (k.queues, k.paused, k.paused_queues)
        self._ack_keys = (k.queues,)
        self._wake_keys = (k.wake,)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A backend for ``redis://`` or ``rediss://`` ``url``; connects lazily (see :meth:`connect`).

        User, password and TLS come from the URL (``rediss://user:pass@host:6380/0``). The query may set
        ``prefix``, ``default_queue``, ``batch_size``, ``recent_outcomes``, ``dead_ttl`` (seconds, ``0``: forever),
        ``rate_limit=<rate>/<burst>``,
        ``leader_lock`` (seconds) and ``cluster=1|0`` (absent: a Cluster node is detected at connect); other
        query arguments go to redis-py. Keyword ``options`` win over the query; ``client_options`` (a dict)
        goes to redis-py's ``from_url``.

        Raises:
            ConfigurationError: bad URL, bad option or prefix. No connection is made here.
        """
        parsed = parse_url(url)
        client_options = dict(options.pop("client_options", None) or {})
        cluster = options.pop("cluster", parsed.cluster)
        kwargs = {**parsed.backend, **options}
        if "rate_limit" in kwargs:
            kwargs["global_rate_limit"] = kwargs.pop("rate_limit")
        client = make_client(parsed.url, cluster=bool(cluster), options=client_options)
        try:
            backend = cls(client, where=parsed.where, **kwargs)
        except TypeError as exc:
            raise ConfigurationError(f"RedisDurableBackend: {exc}") from None
        backend._owns_client = True
        backend._auto_cluster = cluster is None
        backend._url = parsed.url
        backend._client_options = client_options
        return backend

    # -- lifecycle ---------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Check the server once: it answers, the credentials work, it is Redis (a Cluster node is followed).

        Every operation calls this first, so calling it is optional; call it at start to fail early.

        Raises:
            ConfigurationError: wrong password or ACL, or the server does not speak Redis.
            BackendUnavailableError: the server cannot be reached.
        """
        if self._connected:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self.is_connected:  # another caller connected while this one waited for the lock
                return
            with redis_errors(self.where):
                await self.client.ping()
                if self._auto_cluster and int((await self.client.info("cluster")).get("cluster_enabled", 0)):
                    # A Cluster node given as a plain URL: talk to the whole cluster instead.
                    old = self.client
                    self._bind(make_client(self._url, cluster=True, options=self._client_options))
                    await old.aclose()
                    await self.client.ping()
            self._connected = True

    @property
    def is_connected(self) -> bool:
        """Whether :meth:`connect` succeeded (and :meth:`aclose` was not called since)."""
        return self._connected

    async def aclose(self) -> None:
        """Flush pending acks, leave the node list, give up the leader lock, close the client if built here."""
        await self._acks.drain()
        await self._waiters.aclose()
        if self._node_info and self._connected:
            with contextlib.suppress(WorkerError):
                await self.unregister_node()
        if self._leader is not None:
            await self._leader.close()
        if self._owns_client:
            with contextlib.suppress(*_REDIS_ERRORS):
                await self.client.aclose()
        self._connected = False

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` to share dequeues among queues."""
        clean: dict[str, int] = {}
        for name, weight in weights.items():
            if not _positive_int(weight):
                raise ConfigurationError(f"queue weight of {name!r} must be a positive int, not {weight!r}")
            clean[normalize_queue(name, default_queue)] = weight
        self._default_queue = normalize_queue(default_queue)
        self._weights = clean
        self._wrr: dict[str, int] = dict.fromkeys(clean, 0)

    def queue_settings(self) -> tuple[str, Mapping[str, int]]:
        """The default queue and weights in use (``QueueSettingsBackend``: a manager given none keeps them)."""
        return self._default_queue, dict(self._weights)

    # -- enqueue -----------------------------------------------------------------------------------
    async def enqueue(self, task: DurableTask) -> None:
        """Store ``task``, ready at ``run_at`` or now; wakes an idle worker.

        Raises:
            DurableTaskExistsError: a task with this id exists (ready, leased or dead-lettered).
            InvalidTaskError: no id, no handler or no encoded payload.
        """
        if not self._connected:
            await self.connect()
        now = now_ms()
        args: list[Any] = [self._p, now, WAKE_CAP, secrets.token_hex(8)]
        enqueue_args(task, self._default_queue, now, args)
        try:
            result = await self._s.enqueue(self._enqueue_keys, args)
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        if not result[0]:
            if task.idempotency_key is not None:
                raise DurableTaskExistsError(
                    f"durable task {task.id} already exists, or idempotency key {task.idempotency_key!r} is held by"
                    " a live task",
                    ids=[task.id] if task.id is not None else [],
                )
            raise DurableTaskExistsError(f"durable task {task.id} already exists")

    async def enqueue_many(self, tasks: Sequence[DurableTask]) -> None:
        """Store many tasks with one script call per 500 (one round trip each): ``BatchEnqueueBackend``.

        Every task is validated before anything is written. Duplicates are skipped and reported at the end:
        an id already stored, or repeated in ``tasks`` (the script stores the first copy and finds the task
        when it reaches the next one, in the same or a later call). Each script call of 500 is all-or-nothing
        and carries a request id, so a call that redis-py re-sends after a lost reply is not run twice.

        Raises:
            DurableTaskExistsError: some tasks were skipped, the others were stored; ``ids`` has one entry per
                skipped task, in order (the message names the first ten).
            InvalidTaskError: a task has no id, handler or encoded payload (nothing was stored).
            PartialEnqueueError: a call after the first failed (out of memory, connection lost): ``stored``
                names what was stored, ``unknown`` what a cut-off call may have stored; nothing else was.
            BackendError: the first call failed and nothing was stored (a lost connection raises
                ``PartialEnqueueError`` instead, its first 500 tasks in ``unknown``).
        """
        if not tasks:
            return
        if not self._connected:
            await self.connect()
        now = now_ms()
        flat: list[Any] = []
        for task in tasks:
            enqueue_args(task, self._default_queue, now, flat)
        duplicates: list[uuid.UUID] = []
        stored: list[uuid.UUID] = []
        for first in range(0, len(tasks), _ENQUEUE_CHUNK):
            chunk = flat[first * TASK_WIDTH : (first + _ENQUEUE_CHUNK) * TASK_WIDTH]
            try:
                result = await self._s.enqueue(
                    self._enqueue_keys, [self._p, now, WAKE_CAP, secrets.token_hex(8), *chunk]
                )
            except _REDIS_ERRORS as exc:
                error = translate(exc, self.where)
                cut = isinstance(error, BackendUnavailableError)
                if first == 0 and not cut:
                    raise error from exc
                sent = [t.id for t in tasks[first : first + _ENQUEUE_CHUNK] if t.id is not None]
                raise PartialEnqueueError(
                    f"enqueue_many stopped after {len(stored)} of {len(tasks)} tasks were stored: {error}",
                    stored=stored,
                    unknown=sent if cut else (),
                    duplicates=duplicates,
                ) from exc
            for i, ok in enumerate(result):
                task_id = tasks[first + i].id
                if task_id is not None:  # ids were checked above
                    (stored if ok else duplicates).append(task_id)
        if duplicates:
            shown = ", ".join(map(str, duplicates[:10])) + (" ..." if len(duplicates) > 10 else "")
            raise DurableTaskExistsError(f"{len(duplicates)} durable task(s) already exist: {shown}", ids=duplicates)

    # -- schedules (worker_core.schedules.ScheduleBackend; worker_redis/_schedules.py) ---------------
    async def enqueue_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, *, node: str = ""
    ) -> TickResult:
        """Store ``task`` for one schedule tick unless its marker exists or the schedule is paused (one script)."""
        return await self._schedules.enqueue_tick(task, schedule, tick_ms, ttl, node)

    async def publish_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        """Record the schedules a node runs (``P:schedules``)."""
        await self._schedules.publish(records)

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule some node published, by name."""
        return await self._schedules.listed()

    async def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and last event of each schedule, in one round trip."""
        return await self._schedules.states(names)

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule on every node."""
        await self._schedules.set_paused(name, paused)

    async def request_schedule_run(self, name: str) -> None:
        """Ask for one run of ``name`` now; one node's poll takes it."""
        await self._schedules.request_run(name)

    async def take_schedule_runs(self, names: Sequence[str]) -> list[str]:
        """Take the run requests pending for ``names`` (atomic)."""
        return await self._schedules.take_runs(names)

    async def record_schedule_event(self, event: ScheduleEvent, limit: int) -> None:
        """Push an event on the schedule's list (``P:admin:schedule_events:<name>``), keeping ``limit``."""
        await self._schedules.record(event, limit)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name``."""
        return await self._schedules.events(name, limit)

    # -- dequeue -----------------------------------------------------------------------------------
    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks for ``lease`` seconds, in one script call.

        Honours the global pause and paused queues, queue weights, priority then weight; requeues expired
        leases of every queue first and drops orphaned ids. Empty when the leader lock is held elsewhere
        or the global rate limit has no token. At most :data:`MAX_DEQUEUE` leases per call.
        """
        if not self._connected:
            await self.connect()
        limit = max(1, min(int(limit), MAX_DEQUEUE))
        lease_ms = max(1, int((lease if lease > 0 else _DEFAULT_LEASE_S) * 1000))
        if self._leader is not None and not await self._leader.held():
            return []
        granted = limit
        if self._rate is not None:
            granted = await self._rate_call(limit)
            if granted <= 0:
                return []
        now = now_ms()
        args: list[Any] = [self._p, now, lease_ms, granted, self._batch, self._default_queue, lease_token(self.owner)]
        only = self.queues or ()
        args += (self._extra, *self._dead_args, len(only), *only)
        weights = self._weights
        state = self._wrr
        for name, weight in weights.items():  # configured queues always: their weight applies when they wake
            args += (name, weight, state.get(name, 0))
        for name, current in state.items():
            if name not in weights:
                args += (name, 1, current)
        try:
            flat, next_ms, wrr, moved = await self._s.dequeue(self._dequeue_keys, args)
        except _REDIS_ERRORS as exc:
            if self._rate is not None:
                with contextlib.suppress(WorkerError):
                    await self._rate_call(-granted)
            raise translate(exc, self.where) from exc
        self._next_ms = int(next_ms)
        # the busy queues of this call (an idle one starts again from 0): bounded by the queues with work
        self._wrr = {wrr[i].decode(errors="replace"): int(wrr[i + 1]) for i in range(0, len(wrr), 2)}
        for i in range(0, len(moved), 2):
            logger.error(
                "durable task %r moved aside by dequeue: %s",
                moved[i].decode(errors="replace"),
                moved[i + 1].decode(errors="replace"),
            )
        if moved and self._outcome_ttl_ms:
            try:
                await store_moved_outcomes(
                    self.client,
                    self._s.outcome,
                    self.keys,
                    moved,
                    ttl_ms=self._outcome_ttl_ms,
                    recent_limit=self._recent_limit,
                    default_queue=self._default_queue,
                )
            except _REDIS_ERRORS as exc:  # the tasks are dead-lettered either way; only their outcomes are missing
                logger.warning("outcomes of %d dead-lettered task(s) not stored: %s", len(moved) // 2, exc)
        leases, bad = parse_leases(flat, lease_ms, now)
        for poison, why in bad:
            logger.error("durable task %r dead-lettered: %s", poison.lease_id, why)
            with contextlib.suppress(WorkerError):
                await self._fail(poison, why, self._poison_outcome(poison, why), self._outcome_ttl_ms)
        if self._rate is not None and len(leases) < granted:
            with contextlib.suppress(WorkerError):
                await self._rate_call(len(leases) - granted)
        return leases

    async def wait_for_work(self, max_wait: float) -> None:
        """Block until work may be ready, or ``max_wait`` seconds at most (one BLPOP on ``P:wake``).

        Returns early when an enqueue, nack, release or replay pushes a wake-up token, or when the next
        delayed task or the earliest lease expiry seen by the last dequeue is due.
        """
        timeout = min(max_wait, _MAX_BLOCK_S)
        if self._leader is not None and not await self._leader.held():
            # Not the leader: leave the wake-up tokens to the node that may dequeue.
            await asyncio.sleep(max(0.0, timeout))
            return
        if self._next_ms >= 0:
            timeout = min(timeout, (self._next_ms - now_ms()) / 1000)
        if timeout < 0.002:
            return  # work is (nearly) due now; BLPOP's 0 would block forever
        if not self._connected:
            await self.connect()
        try:
            await self.client.blpop(self._wake_keys, timeout=round(timeout, 3))
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc

    # -- settle ------------------------------------------------------------------------------------
    async def ack(self, lease: DurableTaskLease) -> None:
        """The task succeeded: delete it. Concurrent acks share one script call.

        Raises:
            LeaseLostError: the lease expired and the task was handed out again (nothing changed).
        """
        await self._acks.ack(lease)

    async def _send_acks(self, acks: Sequence[PendingAck]) -> Sequence[int]:
        if not self._connected:
            await self.connect()
        args: list[Any] = [self._p, secrets.token_hex(8), self._recent_limit]
        for lease, outcome, ttl_ms in acks:
            args += (lease.lease_id, lease.task.queue, lease.token, lease.attempts, outcome, ttl_ms)
        try:
            result: Sequence[int] = await self._s.ack(self._ack_keys, args)
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        return result

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (attempts are kept).

        Raises:
            LeaseLostError: the lease expired and the task was handed out again (nothing changed).
        """
        now = now_ms()
        queue = lease.task.queue
        keys = (self.keys.processing(queue), self.keys.ready(queue), self.keys.task(lease.lease_id), self.keys.wake)
        ready = now + max(0, int(delay * 1000))
        await self._fenced(self._s.nack, keys, (lease.lease_id, lease.token, lease.attempts, ready, now, WAKE_CAP))

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error`` as ``last_error`` (the hash is kept for replay).

        Raises:
            LeaseLostError: the lease expired and the task was handed out again (nothing changed).
        """
        await self._fail(lease, error, b"", 0)

    def _poison_outcome(self, lease: DurableTaskLease, why: str) -> bytes:
        """The FAILED outcome of a leased task whose record cannot be served (b"" when outcomes are off)."""
        task_id = lease.task.id
        if not self._outcome_ttl_ms or task_id is None:
            return b""
        task = lease.task
        return dead_letter_outcome(
            task_id, why, handler=task.handler, queue=task.queue, attempts=lease.attempts, metadata=task.metadata
        ).encode()

    async def _fail(self, lease: DurableTaskLease, error: str, outcome: bytes, ttl_ms: int) -> None:
        queue = lease.task.queue
        k = self.keys
        task_id = lease.lease_id
        keys = (k.processing(queue), k.ready(queue), k.dead, k.task(task_id), k.result(task_id), k.recent(queue))
        kind = str(getattr(error, "error_type", "") or "")
        trace = str(getattr(error, "traceback", "") or "")[-TRACEBACK_LIMIT:]
        args: tuple[Any, ...] = (task_id, lease.token, lease.attempts, now_ms(), str(error), kind, trace)
        args += (outcome, ttl_ms, self._recent_limit, k.done(task_id), self._p, *self._dead_args)
        await self._fenced(self._s.fail, keys, args)

    # -- result store (ResultStoreBackend) -----------------------------------------------------------
    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and store ``outcome`` for ``ttl`` seconds, in the same (batched) ack script call.

        The outcome is written to ``P:result:<id>``, its id pushed on ``P:recent:<queue>`` and published on
        ``P:done:<id>`` only when the lease is honoured.

        Raises:
            LeaseLostError: the lease expired and the task was handed out again (nothing changed or stored).
        """
        await self._acks.ack(lease, outcome.encode(), _ttl_ms(ttl))

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` (dead-letter) and store ``outcome`` for ``ttl`` seconds, in the same script call.

        Raises:
            LeaseLostError: the lease expired and the task was handed out again (nothing changed or stored).
        """
        await self._fail(lease, error, outcome.encode(), _ttl_ms(ttl))

    async def get_outcome(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The stored outcome of ``task_id``, or ``None`` (unknown, not finished, or expired).

        Raises:
            PayloadError: ``P:result:<id>`` holds something that is not an outcome (corrupt or foreign data).
        """
        if not self._connected:
            await self.connect()
        try:
            data = await self.client.get(self.keys.result(str(task_id)))
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        return None if data is None else TaskOutcome.decode(data)

    async def wait_outcome(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` as soon as it is stored (at once if it is); ``None`` after ``max_wait`` s.

        Woken by the message the storing script publishes, through the backend's one pub/sub connection (no
        polling); ``max_wait=None`` waits without a limit.

        Raises:
            PayloadError: ``P:result:<id>`` holds something that is not an outcome.
            BackendUnavailableError: the backend was closed meanwhile, or the key could not be read.
        """
        if not self._connected:
            await self.connect()
        if max_wait is not None and max_wait <= 0:
            return await self.get_outcome(task_id)
        return await self._waiters.wait(task_id, max_wait)

    async def recent_outcomes(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` outcomes of tasks of ``queue`` that finished most recently, newest first.

        Two reads (``LRANGE`` of ``P:recent:<queue>``, one ``MGET``); expired outcomes are left out, and so is
        an entry that does not decode (logged).
        """
        if limit <= 0:
            return []
        if not self._connected:
            await self.connect()
        queue = normalize_queue(queue, self._default_queue)
        try:
            raw_ids = await self.client.lrange(self.keys.recent(queue), 0, self._recent_limit - 1)
            ids = list(dict.fromkeys(raw.decode(errors="replace") for raw in raw_ids))
            values = await self.client.mget([self.keys.result(i) for i in ids]) if ids else []
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        out: list[TaskOutcome] = []
        for task_id, data in zip(ids, values, strict=True):
            if data is None:
                continue
            try:
                outcome = TaskOutcome.decode(data)
            except PayloadError as exc:
                logger.warning("outcome of durable task %r left out of the recent list: %s", task_id, exc)
                continue
            if outcome.queue == queue:
                out.append(outcome)
                if len(out) >= limit:
                    break
        return out

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the outcomes of tasks the dequeue script dead-letters itself for ``ttl`` s (``None``: store none).

        The manager calls it at start with its ``durable_result_ttl`` (``OutcomeConfigurableBackend``).
        """
        self._outcome_ttl_ms = _ttl_ms(ttl) if ttl and ttl > 0 else 0

    def _done_channel(self, task_id: uuid.UUID) -> bytes:
        return self.keys.done(str(task_id)).encode()

    def _pubsub_connection(self) -> Any:
        """A new, unconnected connection to the server holding this deployment's slot (its channels too)."""
        client = self.client
        if _is_cluster(client):
            node = client.get_node_from_key(self.keys.queues)
            return node.connection_class(**node.connection_kwargs)
        pool = client.connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    async def _refresh_slots(self) -> None:
        if _is_cluster(self.client):
            with contextlib.suppress(*_REDIS_ERRORS):
                await self.client.nodes_manager.initialize()

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds (``<= 0``: 30 s, as go-worker).

        Raises:
            LeaseLostError: the lease is gone or was handed out again (nothing changed).
        """
        now = now_ms()
        until = now + int((duration if duration > 0 else _DEFAULT_LEASE_S) * 1000)
        keys = (self.keys.processing(lease.task.queue), self.keys.task(lease.lease_id))
        await self._fenced(self._s.extend, keys, (lease.lease_id, lease.token, lease.attempts, until, now))
        lease.expires_at = until / 1000

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one script call (``BatchExtendBackend``); per lease, whether it is still held.

        The call also refreshes this node's heartbeat (:meth:`register_node`), so renewal and heartbeat cost
        one round trip per interval together, whatever the number of leases. Safe to re-send.
        """
        if not leases and not self._node_info:
            return []
        if not self._connected:
            await self.connect()
        now = now_ms()
        until = now + int((duration if duration > 0 else _DEFAULT_LEASE_S) * 1000)
        node, ttl, info = "", 0, ""
        if self._node_info:
            node, ttl = self.owner, max(2 * int(duration * 1000), 1000)  # two leases without a heartbeat
            held = self._node_held() if self._node_held is not None else len(leases)
            info = json.dumps({**self._node_info, "running": int(held)}, separators=(",", ":"), default=str)
        args: list[Any] = [self._p, now, until, node, ttl, info]
        for lease in leases:
            args += (lease.lease_id, lease.task.queue, lease.token, lease.attempts)
        try:
            result, backlog = await self._s.extend_many(self._ack_keys, args)
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        if backlog:
            self._backlog = {
                backlog[i].decode(errors="replace"): (
                    int(backlog[i + 1]),
                    max(0, now - int(backlog[i + 2])) / 1000 if int(backlog[i + 2]) >= 0 else 0.0,
                )
                for i in range(0, len(backlog), 3)
            }
        out = [bool(ok) for ok in result]
        for lease, ok in zip(leases, out, strict=True):
            if ok:
                lease.expires_at = until / 1000
        return out

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Per queue: tasks due now and how long the oldest has waited (seconds), as of the last heartbeat.

        Read with no I/O (an OTel gauge callback reads it); empty until this node heartbeats
        (:meth:`register_node`, which a ``TaskManager`` calls at start).
        """
        return dict(self._backlog)

    def register_node(self, info: Mapping[str, object], held: Any) -> None:
        """Heartbeat as a worker node from now on (``NodeRegistryBackend``): ``P:nodes`` and ``P:node:<id>``.

        ``info`` (host, pid, started, ...) is stored with the queues this backend leases from and the count
        ``held()`` returns; :meth:`extend_many` refreshes it, :meth:`aclose` removes it, and a node that dies
        drops out of ``workerctl durable workers`` once its last heartbeat is two leases old.
        """
        queues = list(self.queues or ()) or "all"
        self._node_info = {**info, "id": self.owner, "queues": queues, "weights": dict(self._weights)}
        self._node_held = held

    async def unregister_node(self) -> None:
        """Leave the node list now (``NodeRegistryBackend``): heartbeats stop until :meth:`register_node` again."""
        if not self._node_info:
            return
        self._node_info = {}
        try:
            await self._s.node_leave((self.keys.nodes, self.keys.node(self.owner)), (self.owner,))
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Hand leases back now (graceful shutdown): ready again in their place, the delivery not counted.

        Leases already lost are skipped silently.
        """
        if not leases:
            return
        if not self._connected:
            await self.connect()
        args: list[Any] = [self._p, now_ms(), WAKE_CAP]
        for lease in leases:
            args += (lease.lease_id, lease.task.queue, lease.token, lease.attempts)
        try:
            await self._s.release(self._wake_keys, args)
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc

    async def _fenced(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        if not self._connected:
            await self.connect()
        try:
            ok = await script(keys, args)
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc
        if not ok:
            raise LeaseLostError(f"lease of durable task {args[0]} is lost")

    # -- coordination ------------------------------------------------------------------------------
    async def _rate_call(self, requested: int) -> int:
        assert self._rate is not None
        rate, burst = self._rate
        args = (now_ms(), repr(rate), burst, requested, self._rate_ttl_ms, secrets.token_hex(8))
        try:
            return int(await self._s.global_rate((self.keys.global_rate,), args))
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc

    async def _leader_call(self, ttl_ms: int) -> int:
        if not self._connected:
            await self.connect()
        try:
            return int(await self._s.leader((self.keys.leader,), (self.owner, ttl_ms)))
        except _REDIS_ERRORS as exc:
            raise translate(exc, self.where) from exc

    async def is_leader(self) -> bool:
        """Whether this backend holds the leader lock (always True without ``leader_lock``)."""
        return True if self._leader is None else await self._leader.held()

    def statistics(self) -> dict[str, Any]:
        """Debugging figures: the smooth-WRR state, the next due time seen, pending acks."""
        return {
            "wrr": dict(self._wrr),
            "next_ms": self._next_ms,
            "pending_acks": len(self._acks),
            "outcome_waits": len(self._waiters),
        }


def _ttl_ms(ttl: float) -> int:
    if not (ttl > 0 and math.isfinite(ttl)):
        raise ConfigurationError(f"result ttl must be a positive number of seconds, not {ttl!r}")
    return max(1, int(ttl * 1000))


def _is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)
