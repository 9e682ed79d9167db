"""Durable task records and the backend contract every durable backend implements.

A backend stores :class:`DurableTask` records and hands them out as leases (:class:`DurableTaskLease`).
Delivery is at least once: a lease that is not acked before it expires is handed out again.
Every lease carries a fencing ``token``; ``ack``/``nack``/``fail``/``extend`` with a lease whose
token is no longer current (the lease expired and the task went to another consumer) raise
:class:`~worker_core.errors.LeaseLostError` and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = (
    "BatchEnqueueBackend",
    "DurableBackend",
    "DurableTask",
    "DurableTaskLease",
    "QueueConfigurableBackend",
    "ReleasableBackend",
    "WakeableBackend",
)


@dataclass(slots=True)
class DurableTask:
    """A task persisted by a durable backend and run by whichever node leases it.

    Give either ``message`` (an object the codec encodes: a protobuf message, a ``msgspec.Struct`` or
    plain data) or ``payload`` (bytes already encoded). ``priority``: lower runs first (go-worker's
    durable default is 1). ``retries=None`` means the manager's ``max_retries``; an explicit value is
    capped by it. ``retry_delay`` is seconds. ``run_at`` (naive means UTC) delays the first delivery.

    When a backend receives a task from the manager, ``id`` is set, ``payload`` holds the encoded
    bytes, ``queue`` is a real queue name, ``retries`` is an int and ``retry_delay`` is a float.
    """

    handler: str
    message: Any = None
    payload: bytes | None = None
    id: uuid.UUID | None = field(default=None, kw_only=True)
    priority: int = field(default=1, kw_only=True)
    queue: str = field(default="", kw_only=True)
    weight: int = field(default=1, kw_only=True)
    run_at: datetime | None = field(default=None, kw_only=True)
    retries: int | None = field(default=None, kw_only=True)
    retry_delay: float | None = field(default=None, kw_only=True)
    metadata: dict[str, str] | None = field(default=None, kw_only=True)


@dataclass(slots=True)
class DurableTaskLease:
    """One delivery of a durable task to one consumer.

    ``attempts`` counts deliveries including this one; ``max_retries`` is the task's retries, so the task
    may be delivered ``max_retries + 1`` times in all. ``token`` fences the lease: it changes on every
    delivery, and a backend rejects operations that carry an old one. ``lease_id`` is the task id as a
    string (go-worker's LeaseID).
    """

    task: DurableTask
    lease_id: str
    attempts: int
    max_retries: int
    token: str
    expires_at: float = 0.0  # epoch seconds, informational


@runtime_checkable
class DurableBackend(Protocol):
    """The six operations of go-worker's DurableBackend, async, with fencing.

    Implementations raise :class:`~worker_core.errors.DurableTaskExistsError` from ``enqueue`` for a
    duplicate id, :class:`~worker_core.errors.LeaseLostError` for a stale or missing lease, and
    :class:`~worker_core.errors.BackendUnavailableError` when the store cannot be reached (the manager
    retries those with backoff).
    """

    async def enqueue(self, task: DurableTask) -> None:
        """Persist ``task`` (its ``id`` and ``payload`` are set); ready at ``run_at`` or now."""
        ...

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` ready tasks for ``lease`` seconds; an empty list when none is ready."""
        ...

    async def ack(self, lease: DurableTaskLease) -> None:
        """The task succeeded: remove it."""
        ...

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """The attempt failed and may be retried: make it ready again after ``delay`` seconds."""
        ...

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """The task failed for good: move it to the dead-letter queue with ``error`` as the reason."""
        ...

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds."""
        ...


@runtime_checkable
class BatchEnqueueBackend(Protocol):
    """Optional: store many tasks in a few round trips (``TaskManager.register_durable_tasks`` uses it)."""

    async def enqueue_many(self, tasks: Sequence[DurableTask]) -> None:
        """Store every task of ``tasks`` that it can, in as few round trips as it can.

        Every task is validated before any is written: an invalid one raises
        :class:`~worker_core.errors.InvalidTaskError` and nothing is stored. A task whose id is already
        stored, or repeats an earlier task of the same batch (the first copy wins), is skipped and the others
        are stored; then :class:`~worker_core.errors.DurableTaskExistsError` is raised with ``ids`` holding one
        entry per skipped task, in batch order. An empty batch does nothing.
        """
        ...


@runtime_checkable
class QueueConfigurableBackend(Protocol):
    """Optional: the manager passes its default queue and queue weights at start."""

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` to share dequeues among queues."""
        ...


@runtime_checkable
class ReleasableBackend(Protocol):
    """Optional: hand leases back at once (graceful shutdown), without counting the delivery."""

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make the leased tasks ready again now, as if they had not been delivered."""
        ...


@runtime_checkable
class WakeableBackend(Protocol):
    """Optional: block until work may be ready instead of polling."""

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may have become ready, or after ``max_wait`` seconds at the latest."""
        ...
