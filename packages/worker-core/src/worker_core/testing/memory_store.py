"""The task store of :class:`~worker_core.testing.InMemoryDurableBackend`: records, queue heaps, leases, the DLQ.

It owns every stored task and the indices over them (per queue: a heap of delayed and one of due tasks; a heap
of lease expiries; idempotency keys; the dead-letter order). Heap entries carry the record's version and are
deleted lazily: an entry whose version is not the record's any more is skipped. Policy (which queue's turn it
is, pauses, the delivery limit, outcomes, wake-ups) stays in the backend.
"""

from __future__ import annotations

import heapq
import itertools
import secrets
from collections.abc import Collection
from typing import final

from worker_core.durable.types import DEAD_PRUNE_LIMIT, DurableTask, DurableTaskLease, dead_ttl_seconds
from worker_core.errors import LeaseLostError

from .memory_records import DeadLetter, MemoryTaskState, State, _copy, _Queue, _Record

__all__ = ("MemoryTaskStore",)


@final
class MemoryTaskStore:
    """Stored tasks by id, with the heaps that find the due ones and the expired leases."""

    __slots__ = (
        "_dead",
        "_dead_ttl",
        "_keys",
        "_leases",
        "_nonce",
        "_seq",
        "_tokens",
        "_versions",
        "queues",
        "records",
    )

    def __init__(self, dead_ttl: float | None = None) -> None:
        self._dead_ttl = dead_ttl_seconds(dead_ttl)  # seconds a dead task is kept (None: forever)
        self.records: dict[str, _Record] = {}
        self.queues: dict[str, _Queue] = {}
        self._keys: dict[str, str] = {}  # idempotency key -> id of the live task that holds it
        self._leases: list[tuple[float, int, str]] = []
        self._dead: dict[str, None] = {}  # insertion-ordered set: oldest failure first
        self._seq = itertools.count()
        self._versions = itertools.count(1)
        self._tokens = itertools.count(1)
        self._nonce = secrets.token_hex(4)

    def __len__(self) -> int:
        return len(self.records)

    # -- storing -------------------------------------------------------------------------------------

    def insert(self, stored: DurableTask, key: str, ready_at: float) -> None:
        """Store a new task, ready at ``ready_at``."""
        record = _Record(stored, next(self._seq), ready_at)
        self.records[key] = record
        if stored.idempotency_key is not None:
            self._keys[stored.idempotency_key] = key
        self.queues.setdefault(stored.queue, _Queue())
        self.make_ready(record, ready_at)

    def remove(self, key: str) -> None:
        """Forget an acked task (and free its idempotency key)."""
        record = self.records.pop(key)
        self.release_key(record.task)

    def key_holder(self, task: DurableTask) -> str | None:
        """The id of the live task holding ``task``'s idempotency key, if any."""
        return self._keys.get(task.idempotency_key) if task.idempotency_key is not None else None

    def release_key(self, task: DurableTask) -> None:
        """Free ``task``'s idempotency key if ``task`` holds it."""
        if task.idempotency_key is not None and self._keys.get(task.idempotency_key) == str(task.id):
            del self._keys[task.idempotency_key]

    # -- state changes -------------------------------------------------------------------------------

    def make_ready(self, record: _Record, ready_at: float) -> None:
        """Make ``record`` ready at ``ready_at`` (with a new version: older heap entries are skipped)."""
        record.state = "ready"
        record.token = ""
        record.ready_at = ready_at
        record.version = next(self._versions)
        key = str(record.task.id)
        heapq.heappush(self.queues[record.task.queue].delayed, (ready_at, record.seq, record.version, key))

    def pop_due(self, queue: _Queue, now: float) -> _Record | None:
        """The next due task of ``queue`` (delayed ones that became due first move to the due heap)."""
        delayed = queue.delayed
        while delayed and delayed[0][0] <= now:
            ready_at, seq, version, key = heapq.heappop(delayed)
            record = self.records.get(key)
            if record is not None and record.version == version:
                task = record.task
                heapq.heappush(queue.due, (task.priority, -task.weight, ready_at, seq, version, key))
        due = queue.due
        while due:
            *_, version, key = heapq.heappop(due)
            record = self.records.get(key)
            if record is not None and record.version == version:
                return record
        return None

    def lease(self, record: _Record, now: float, lease_s: float) -> DurableTaskLease:
        """Lease ``record`` for ``lease_s`` seconds with a new token."""
        record.state = "leased"
        record.attempts += 1
        record.token = f"{self._nonce}-{next(self._tokens)}"
        record.expires_at = now + lease_s
        record.version = next(self._versions)
        key = str(record.task.id)
        heapq.heappush(self._leases, (record.expires_at, record.version, key))
        task = record.task
        return DurableTaskLease(
            task=_copy(task),
            lease_id=key,
            attempts=record.attempts,
            max_retries=task.retries or 0,
            token=record.token,
            expires_at=record.expires_at,
        )

    def extend(self, record: _Record, expires_at: float) -> None:
        """Move a held lease's expiry to ``expires_at``."""
        record.expires_at = expires_at
        record.version = next(self._versions)
        heapq.heappush(self._leases, (expires_at, record.version, str(record.task.id)))

    def requeue_expired(self, now: float) -> None:
        """Make every task whose lease expired by ``now`` ready again."""
        leases = self._leases
        while leases and leases[0][0] <= now:
            _, version, key = heapq.heappop(leases)
            record = self.records.get(key)
            if record is not None and record.version == version and record.state == "leased":
                self.make_ready(record, now)

    def dead_letter(self, record: _Record, error: str, now: float) -> None:
        """Move ``record`` to the dead-letter queue with ``error``; then delete expired dead tasks (bounded)."""
        self.release_key(record.task)
        record.state = "dead"
        record.token = ""
        record.version = next(self._versions)
        record.last_error = error
        record.failed_at = now
        key = str(record.task.id)
        self._dead.pop(key, None)
        self._dead[key] = None
        if self._dead_ttl is not None:
            self._prune_dead(now - self._dead_ttl)

    def _prune_dead(self, cutoff: float) -> None:
        """Delete at most :data:`DEAD_PRUNE_LIMIT` of the oldest dead tasks that failed before ``cutoff``."""
        for key in list(itertools.islice(self._dead, DEAD_PRUNE_LIMIT)):
            record = self.records.get(key)
            if record is not None and record.state == "dead" and record.failed_at >= cutoff:
                return
            del self._dead[key]  # expired, or a stale entry (the task is gone or alive again)
            if record is not None and record.state == "dead":
                del self.records[key]

    def release(self, lease: DurableTaskLease, now: float) -> None:
        """Make the task ``lease`` holds ready at ``now`` without counting the delivery (a stale lease: nothing)."""
        record = self.records.get(lease.lease_id)
        if record is not None and record.state == "leased" and record.token == lease.token:
            record.attempts -= 1
            self.make_ready(record, now)

    def held(self, lease: DurableTaskLease) -> _Record:
        """The record ``lease`` still holds.

        Raises:
            LeaseLostError: the task is gone, not leased, or leased with another token.
        """
        record = self.records.get(lease.lease_id)
        if record is None or record.state != "leased" or record.token != lease.token:
            raise LeaseLostError(f"lease on durable task {lease.lease_id} is no longer held")
        return record

    # -- reading -------------------------------------------------------------------------------------

    def next_event_time(self, skip_queues: Collection[str], queues_paused: bool) -> float | None:
        """The earliest time something may become ready (lazily deleted entries may make it early: harmless)."""
        times: list[float] = []
        if self._leases:
            times.append(self._leases[0][0])
        if not queues_paused:
            for name, queue in self.queues.items():
                if name in skip_queues:
                    continue
                if queue.due:
                    times.append(float("-inf"))
                    break
                if queue.delayed:
                    times.append(queue.delayed[0][0])
        return min(times) if times else None

    def count(self, state: State, queue: str | None) -> int:
        """Tasks in ``state`` (in one queue, or all)."""
        return sum(1 for r in self.records.values() if r.state == state and (queue is None or r.task.queue == queue))

    def snapshot(self, key: str) -> MemoryTaskState | None:
        """A copy of the stored task ``key``, or ``None``."""
        record = self.records.get(key)
        if record is None:
            return None
        return MemoryTaskState(
            task=_copy(record.task),
            state=record.state,
            attempts=record.attempts,
            ready_at=record.ready_at,
            lease_expires_at=record.expires_at if record.state == "leased" else None,
            last_error=record.last_error or None,
        )

    def dead_letters(self) -> list[DeadLetter]:
        """The dead-lettered tasks, oldest failure first."""
        out: list[DeadLetter] = []
        for key in self._dead:
            record = self.records.get(key)
            if record is not None and record.state == "dead":
                out.append(DeadLetter(_copy(record.task), record.last_error, record.attempts, record.failed_at))
        return out
