"""An in-memory durable backend with the full contract: leases, expiry, delays, priorities, weights, DLQ, fencing.

It is what ``TaskManager(durable_backend="memory://")`` uses, and the reference the conformance suite is
checked against. State lives in one process and dies with it; use it for tests, examples and single-node
jobs that may be lost on restart. Every method runs without awaiting in the middle, so within one event
loop each operation is atomic: many consumers never hold the same task at once.

Ordering: dequeues share tasks among queues by weighted round robin (``queue_weights``, missing queues
weigh 1): a queue keeps its turn until it has served ``weight`` tasks or has nothing due, and the turn
carries over from one dequeue call to the next, so weights hold even when each call asks for one task
(go-worker applies weights within one call only).
Within a queue the due task with the lowest ``priority`` goes first, then the highest ``weight``, then
the earliest ready time, then enqueue order.

Fencing: each delivery gets a new ``token``; ``ack``/``nack``/``fail``/``extend``/``release`` need the
current one, and the task must still be leased. An expired lease stays valid until the task is handed
out again or requeued by a later ``dequeue`` (expiry is applied lazily, as in go-worker's Redis backend).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping, Sequence
from typing import final

from worker_core.durable.outcomes import DEFAULT_RECENT_OUTCOMES, TaskOutcome
from worker_core.durable.types import (
    DEFAULT_DEAD_TTL,
    DEFAULT_EXTRA_DELIVERIES,
    DurableTask,
    DurableTaskLease,
    delivery_limit,
)
from worker_core.errors import ConfigurationError, DurableTaskExistsError, LeaseLostError
from worker_core.options import config_int
from worker_core.schedules.memory import MemoryScheduleState
from worker_core.schedules.types import ScheduleEvent, ScheduleRecord, ScheduleState, TickResult

from .clock import Clock, FakeClock
from .memory_outcomes import MemoryOutcomeStore
from .memory_records import DeadLetter, MemoryTaskState, Wakeup, _positive_int, _SystemClock, normalise
from .memory_store import MemoryTaskStore

__all__ = ("DeadLetter", "InMemoryDurableBackend", "MemoryTaskState")


@final
class InMemoryDurableBackend:
    """The durable contract in process memory (see the module docstring for ordering and fencing).

    Implements ``DurableBackend``, ``BatchEnqueueBackend``, ``QueueConfigurableBackend``,
    ``ReleasableBackend``, ``IdempotencyKeyBackend``, ``WakeableBackend`` and ``ScheduleBackend`` (its state:
    :attr:`schedule_state`). Use it from one event loop.

    Args:
        clock: Source of epoch seconds (a :class:`~worker_core.testing.FakeClock` in tests); the system clock
            when ``None``. A ``FakeClock``'s ``advance`` also wakes :meth:`wait_for_work`.
        default_queue: Queue of tasks enqueued with ``queue=""``.
        queue_weights: Dequeue share per queue (missing queues weigh 1).
        extra_deliveries: Deliveries beyond ``retries + 1`` before a task is dead-lettered with the reason
            "delivery limit" instead of being handed out (:func:`~worker_core.durable.types.delivery_limit`).
        dead_ttl: Seconds a dead task is kept (7 days; ``None``/``0``: forever), pruned when another dies.

    Raises:
        ConfigurationError: an empty default queue, a weight below 1 or a bad ``dead_ttl``.
    """

    #: Idempotency keys are enforced (:class:`~worker_core.durable.types.IdempotencyKeyBackend`).
    supports_idempotency_keys = True

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        default_queue: str = "default",
        queue_weights: Mapping[str, int] | None = None,
        extra_deliveries: int = DEFAULT_EXTRA_DELIVERIES,
        max_outcomes: int = 100_000,
        recent_limit: int = DEFAULT_RECENT_OUTCOMES,
        dead_ttl: float | None = DEFAULT_DEAD_TTL,
    ) -> None:
        self._extra = config_int(extra_deliveries, "extra_deliveries", 0)
        self._clock: Clock = clock if clock is not None else _SystemClock()
        self._outcomes = MemoryOutcomeStore(self._clock, max_outcomes, recent_limit)
        self.schedule_state = MemoryScheduleState(self._clock.time)
        self._default_queue = "default"
        self._weights: dict[str, int] = {}
        self.configure_queues(default_queue, queue_weights or {})
        self._store = MemoryTaskStore(dead_ttl)
        self._rr_queue = ""  # the queue whose turn it is, and how many tasks it may still take
        self._rr_credit = 0
        self._paused = False
        self._paused_queues: set[str] = set()
        self._wakeup = Wakeup()
        if isinstance(clock, FakeClock):
            clock.subscribe(self._notify)

    # -- configuration -------------------------------------------------------------------------------

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` for the dequeue share.

        Raises:
            ConfigurationError: an empty default queue or a weight below 1.
        """
        name = default_queue.strip()
        if not name:
            raise ConfigurationError("default queue must not be empty")
        for queue, weight in weights.items():
            if not _positive_int(weight):
                raise ConfigurationError(f"queue weight for {queue!r} must be an int >= 1, got {weight!r}")
        self._default_queue = name
        self._weights = {queue.strip(): weight for queue, weight in weights.items()}

    def queue_settings(self) -> tuple[str, Mapping[str, int]]:
        """The default queue and weights now in use (``QueueSettingsBackend``)."""
        return self._default_queue, dict(self._weights)

    def pause(self, queue: str | None = None) -> None:
        """Stop handing out tasks (of one queue, or of all when ``queue`` is ``None``)."""
        if queue is None:
            self._paused = True
        else:
            self._paused_queues.add(queue.strip() or self._default_queue)

    def resume(self, queue: str | None = None) -> None:
        """Undo :meth:`pause` (for one queue, or the global pause when ``queue`` is ``None``)."""
        if queue is None:
            self._paused = False
        else:
            self._paused_queues.discard(queue.strip() or self._default_queue)
        self._notify()

    # -- the DurableBackend contract -----------------------------------------------------------------

    async def enqueue(self, task: DurableTask) -> None:
        """Store ``task``; it is ready at ``run_at`` (or now).

        Raises:
            InvalidTaskError: no id, no handler, or a payload that is not bytes.
            DurableTaskExistsError: a task with this id is stored (ready, leased or dead-lettered).
        """
        stored, ready_at = normalise(task, self._clock.time(), self._default_queue)
        key = str(task.id)
        if key in self._store.records:
            raise DurableTaskExistsError(f"durable task {key} already exists")
        holder = self._store.key_holder(stored)
        if holder is not None:
            assert stored.id is not None
            raise DurableTaskExistsError(
                f"idempotency key {stored.idempotency_key!r} is held by live task {holder}", ids=[stored.id]
            )
        self._store.insert(stored, key, ready_at)
        self._notify()

    async def enqueue_many(self, tasks: Sequence[DurableTask]) -> None:
        """Store every task of ``tasks`` (the ``BatchEnqueueBackend`` contract); all are checked first.

        Raises:
            InvalidTaskError: a task has no id, no handler, or a payload that is not bytes (nothing stored).
            DurableTaskExistsError: some tasks were skipped, their id being stored already or used by an
                earlier task of the batch; ``ids`` lists one entry per skipped task. The others were stored.
        """
        now = self._clock.time()
        checked = [normalise(task, now, self._default_queue) for task in tasks]  # every task, before anything is stored
        skipped: list[uuid.UUID] = []
        for stored, ready_at in checked:
            assert stored.id is not None
            key = str(stored.id)
            if key in self._store.records or self._store.key_holder(stored) is not None:  # or repeated in the batch
                skipped.append(stored.id)
            else:
                self._store.insert(stored, key, ready_at)
        if len(skipped) < len(tasks):
            self._notify()
        if skipped:
            shown = ", ".join(str(i) for i in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            raise DurableTaskExistsError(f"{len(skipped)} durable task(s) already exist: {shown}", ids=skipped)

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks for ``lease`` seconds (weighted round robin across queues).

        Raises:
            ConfigurationError: ``lease`` is not positive.
        """
        if lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease!r}")
        limit = max(int(limit), 1)
        now = self._clock.time()
        self._store.requeue_expired(now)
        if self._paused:
            return []
        names = sorted(name for name in self._store.queues if name not in self._paused_queues)
        if not names:
            return []
        # Weighted round robin that carries over between calls: the current queue keeps its turn until it has
        # served `weight` tasks or runs dry, so weights hold even when every dequeue asks for one task.
        index = bisect.bisect_left(names, self._rr_queue)
        if index == len(names) or names[index] != self._rr_queue:
            self._rr_credit = 0
        index %= len(names)
        leases: list[DurableTaskLease] = []
        idle = 0  # queues visited in a row that had nothing due
        while len(leases) < limit and idle < len(names):
            name = names[index]
            if self._rr_credit <= 0:
                self._rr_credit = self._weights.get(name, 1)
            record = self._store.pop_due(self._store.queues[name], now)
            if record is not None and record.attempts >= delivery_limit(record.task.retries or 0, self._extra):
                reason = f"delivery limit: delivered {record.attempts} times without settling"
                self._store.dead_letter(record, reason, now)
                self._outcomes.keep_dead_letter(record.task, reason, record.attempts)
                continue
            if record is None:
                idle += 1
                self._rr_credit = 0
            else:
                idle = 0
                self._rr_credit -= 1
                leases.append(self._store.lease(record, now, lease))
            if self._rr_credit <= 0:
                index = (index + 1) % len(names)
        self._rr_queue = names[index]
        return leases

    async def ack(self, lease: DurableTaskLease) -> None:
        """Remove the task. Raises :class:`LeaseLostError` if the lease is not current."""
        self._store.held(lease)
        self._store.remove(lease.lease_id)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (negative means now).

        Raises:
            LeaseLostError: the lease is not current.
        """
        record = self._store.held(lease)
        self._store.make_ready(record, self._clock.time() + max(float(delay), 0.0))
        self._notify()

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Move the task to the dead-letter queue with ``error`` as its reason.

        Raises:
            LeaseLostError: the lease is not current.
        """
        self._store.dead_letter(self._store.held(lease), str(error), self._clock.time())

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the outcomes of tasks dead-lettered by the delivery limit for ``ttl`` seconds (``None``: none)."""
        self._outcomes.dead_letter_ttl = ttl if ttl and ttl > 0 else None

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds.

        Raises:
            LeaseLostError: the lease is not current.
            ConfigurationError: ``duration`` is not positive.
        """
        if duration <= 0:
            raise ConfigurationError(f"lease duration must be > 0 seconds, got {duration!r}")
        record = self._store.held(lease)
        self._store.extend(record, self._clock.time() + duration)
        lease.expires_at = record.expires_at

    # -- optional protocols --------------------------------------------------------------------------

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Extend each lease by ``duration`` seconds from now; per lease, whether it is still held.

        Raises:
            ConfigurationError: ``duration`` is not positive.
        """
        out: list[bool] = []
        for lease in leases:
            try:
                await self.extend(lease, duration)
            except LeaseLostError:
                out.append(False)
            else:
                out.append(True)
        return out

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make leased tasks ready now without counting the delivery; leases no longer current are skipped."""
        now = self._clock.time()
        for lease in leases:
            self._store.release(lease, now)
        self._notify()

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may be ready (enqueue, nack, release, clock advance) or after ``max_wait`` s."""
        now = self._clock.time()
        next_time = self._store.next_event_time(self._paused_queues, self._paused)
        if next_time is not None and next_time <= now:
            return
        timeout = max(float(max_wait), 0.0)
        if next_time is not None:
            timeout = min(timeout, next_time - now)
        await self._wakeup.wait(timeout)

    # -- results (ResultStoreBackend) ----------------------------------------------------------------

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and keep ``outcome`` for ``ttl`` seconds. Raises :class:`LeaseLostError` (nothing kept)."""
        await self.ack(lease)
        self._outcomes.keep(outcome, ttl)

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` and keep ``outcome`` for ``ttl`` seconds. Raises :class:`LeaseLostError` (nothing kept)."""
        await self.fail(lease, error)
        self._outcomes.keep(outcome, ttl)

    async def get_outcome(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The kept outcome of ``task_id``, or ``None``."""
        return self._outcomes.get(task_id)

    async def wait_outcome(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` once kept (at once if it is); ``None`` after ``max_wait`` seconds."""
        return await self._outcomes.wait(task_id, max_wait)

    async def recent_outcomes(self, queue: str, limit: int) -> list[TaskOutcome]:
        """Up to ``limit`` of the outcomes kept for ``queue``, newest first."""
        return self._outcomes.recent(queue, limit)

    # -- schedules (ScheduleBackend, worker_core.schedules) -------------------------------------------

    async def enqueue_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, *, node: str = ""
    ) -> TickResult:
        """Store ``task`` for the tick unless its marker exists or the schedule is paused (one atomic step)."""
        stored, ready_at = normalise(task, self._clock.time(), self._default_queue)
        key = str(task.id)

        def store() -> bool:
            if key in self._store.records:
                return False
            self._store.insert(stored, key, ready_at)
            self._notify()
            return True

        event = ScheduleEvent(schedule, "enqueued", int(self._clock.time() * 1000), tick_ms, key, node)
        return self.schedule_state.tick(schedule, tick_ms, ttl, store, event)

    async def publish_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        """Record the schedules a node runs."""
        self.schedule_state.publish(records)

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every published schedule, by name."""
        return self.schedule_state.listed()

    async def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and last event per schedule."""
        return self.schedule_state.states(names)

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume a schedule for every manager on this backend."""
        self.schedule_state.set_paused(name, paused)

    async def request_schedule_run(self, name: str) -> None:
        """Ask for one run of ``name`` now (one taker)."""
        self.schedule_state.request_run(name)

    async def take_schedule_runs(self, names: Sequence[str]) -> list[str]:
        """Take the run requests pending for ``names``."""
        return self.schedule_state.take_runs(names)

    async def record_schedule_event(self, event: ScheduleEvent, limit: int) -> None:
        """Keep ``event`` (the newest ``limit`` per schedule)."""
        self.schedule_state.record(event, limit)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name``."""
        return self.schedule_state.events(name, limit)

    # -- inspection ----------------------------------------------------------------------------------

    def dead_letters(self) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest failure first, each with its last error."""
        return self._store.dead_letters()

    def get(self, task_id: uuid.UUID | str) -> MemoryTaskState | None:
        """A snapshot of the stored task, or ``None`` (never stored, or acked)."""
        return self._store.snapshot(str(task_id))

    def ready_count(self, queue: str | None = None) -> int:
        """Tasks waiting to be leased (due or delayed), in one queue or all."""
        return self._store.count("ready", queue)

    def leased_count(self, queue: str | None = None) -> int:
        """Tasks currently leased (including expired leases not yet requeued)."""
        return self._store.count("leased", queue)

    def queues(self) -> list[str]:
        """Names of the queues that ever held a task, sorted."""
        return sorted(self._store.queues)

    def __len__(self) -> int:
        return len(self._store)

    def _notify(self) -> None:
        self._wakeup.set()
