"""Durable task records and the backend contract every durable backend implements.

A backend stores :class:`DurableTask` records and hands them out as leases (:class:`DurableTaskLease`).
Delivery is at least once: a lease that is not acked before it expires is handed out again.
Every lease carries a fencing ``token``; ``ack``/``nack``/``fail``/``extend`` with a lease whose
token is no longer current (the lease expired and the task went to another consumer) raise
:class:`~worker_core.errors.LeaseLostError` and change nothing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from worker_core.errors import ConfigurationError
from worker_core.options import config_seconds

__all__ = (
    "DEAD_PRUNE_LIMIT",
    "DEFAULT_DEAD_TTL",
    "DEFAULT_EXTRA_DELIVERIES",
    "IDEMPOTENCY_KEY_LIMIT",
    "BatchEnqueueBackend",
    "BatchExtendBackend",
    "DurableBackend",
    "DurableTask",
    "DurableTaskLease",
    "FailureReason",
    "IdempotencyKeyBackend",
    "NodeRegistryBackend",
    "QueueConfigurableBackend",
    "QueueSettingsBackend",
    "ReleasableBackend",
    "WakeableBackend",
    "dead_ttl_from_text",
    "dead_ttl_seconds",
    "delivery_limit",
    "lease_holder",
    "lease_token",
)

#: Deliveries a task may have beyond its ``retries + 1`` attempts before a backend dead-letters it with the
#: reason "delivery limit" (each one ended without the task being settled: its worker died, or lost the lease).
DEFAULT_EXTRA_DELIVERIES = 3

#: Seconds a dead-lettered task is kept (7 days, Dramatiq's ``dead_message_ttl``): a backend's ``dead_ttl``.
DEFAULT_DEAD_TTL = 604_800.0
#: Expired dead tasks one dead-lettering deletes at most (the oldest first), so pruning stays bounded per call.
DEAD_PRUNE_LIMIT = 100


def dead_ttl_seconds(value: object) -> float | None:
    """A backend's ``dead_ttl`` checked: seconds (or a ``timedelta``) > 0; ``None`` or ``0`` keeps dead tasks forever.

    Raises:
        ConfigurationError: not a number of seconds, negative or not finite (the message names ``dead_ttl``).
    """
    seconds = config_seconds(value, "dead_ttl", allow_zero=True)
    return seconds or None


def dead_ttl_from_text(text: str) -> float | None:
    """The ``?dead_ttl=<seconds>`` of a backend URL (``0``: forever), checked as :func:`dead_ttl_seconds`.

    Raises:
        ConfigurationError: not a number, negative or not finite.
    """
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigurationError(f"dead_ttl must be a number of seconds (0: keep forever), not {text!r}") from None
    return dead_ttl_seconds(seconds)


def delivery_limit(retries: int, extra: int = DEFAULT_EXTRA_DELIVERIES) -> int:
    """Most deliveries of a task with ``retries`` retries: ``retries + 1 + extra`` (``retries`` below 0 counts as 0).

    A delivery past it is never handed out: the backend dead-letters the task with a reason that starts with
    ``"delivery limit"``, so a task that kills every process that runs it (OOM, a segfault) ends in the DLQ.
    """
    return max(0, int(retries)) + 1 + max(0, int(extra))


def lease_token(node: str) -> str:
    """A new fencing token for a lease that node ``node`` takes: ``"<node>/<random hex>"``.

    The token stays opaque to settling (it is compared whole); the part before the first ``/`` names the node
    holding the lease (:func:`lease_holder`), which is what an admin shows as ``TaskRecord.leased_by``.
    """
    return f"{node}/{secrets.token_hex(8)}"


def lease_holder(token: str) -> str:
    """The node id a lease token starts with (before the first ``/``); ``""`` for a token without one.

    Tokens without a ``/`` (written by go-worker or an older version) name no node.
    """
    node, slash, _ = token.partition("/")
    return node if slash else ""


#: Characters of a traceback a dead-letter entry keeps at most (the end: the innermost frames and the error).
TRACEBACK_LIMIT = 8000


class FailureReason(str):
    """A dead-letter reason (``"Type: message"``, what ``fail`` stores) that also carries the error's details.

    It *is* the reason string, so a backend that knows only ``fail(lease, error: str)`` stores the text; one
    that looks for these attributes also stores ``error_type`` and a bounded ``traceback`` (the last
    :data:`TRACEBACK_LIMIT` characters of the formatted exception, ``""`` when there is none).
    """

    error_type: str
    traceback: str

    def __new__(cls, text: str, error_type: str = "", traceback: str = "") -> FailureReason:  # noqa: D102
        reason = super().__new__(cls, text)
        reason.error_type = error_type
        reason.traceback = traceback[-TRACEBACK_LIMIT:] if traceback else ""
        return reason


@dataclass(slots=True)
class DurableTask:
    """A task persisted by a durable backend and run by whichever node leases it.

    Give either ``message`` (an object the codec encodes: a protobuf message, a ``msgspec.Struct`` or
    plain data) or ``payload`` (bytes already encoded). ``priority``: lower runs first (go-worker's
    durable default is 1). ``retries=None`` means the manager's ``max_retries``; an explicit value is
    capped by it. ``retry_delay`` is seconds. ``run_at`` (naive means UTC) delays the first delivery.

    ``idempotency_key`` (optional, at most :data:`IDEMPOTENCY_KEY_LIMIT` characters): the backend keeps at most
    one *live* task (ready, delayed or leased) per key; enqueueing another while one is live raises
    :class:`~worker_core.errors.DurableTaskExistsError`. Once the task is acked, dead-lettered or deleted, the
    key is free again. Only backends that implement :class:`IdempotencyKeyBackend` accept it.

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
    idempotency_key: str | None = field(default=None, kw_only=True)


#: Longest idempotency key a task may carry (characters).
IDEMPOTENCY_KEY_LIMIT = 512


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
class BatchExtendBackend(Protocol):
    """Optional: renew many leases in one round trip (the manager's lease renewal uses it)."""

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Push each lease's expiry to now + ``duration`` seconds; per lease, whether it is still held.

        ``False`` means the lease is lost (it expired and the task went to another consumer, or the task is
        gone); nothing changed for it. Safe to call again with the same leases (it only sets expiries).
        """
        ...


@runtime_checkable
class NodeRegistryBackend(Protocol):
    """Optional: the backend lists the worker nodes that consume from it, each kept alive by its heartbeats."""

    def register_node(self, info: Mapping[str, object], held: Callable[[], int]) -> None:
        """Describe this node (``host``, ``pid``, ``started``, ``queues``); ``held()`` counts the leases it holds.

        The manager calls it at start; the backend heartbeats from then on (in the same round trip as the
        lease renewal when it can). A node that dies drops out once its last heartbeat is older than its time
        to live.
        """
        ...

    async def unregister_node(self) -> None:
        """This node stops: take it off the list now (the manager calls it last thing at stop)."""
        ...


@runtime_checkable
class QueueConfigurableBackend(Protocol):
    """Optional: the manager passes its default queue and queue weights at start."""

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        """Use ``default_queue`` for tasks without a queue and ``weights`` to share dequeues among queues."""
        ...


@runtime_checkable
class QueueSettingsBackend(Protocol):
    """Optional: the default queue and queue weights the backend was built with (its URL or constructor).

    A manager given no ``default_queue`` / ``queue_weights`` of its own uses these, so settings made on the
    backend (``memory://?default_queue=jobs&weights=jobs:3``, say) are not overridden by the manager's defaults.
    """

    def queue_settings(self) -> tuple[str, Mapping[str, int]]:
        """``(default_queue, weights)`` as configured now."""
        ...


@runtime_checkable
class ReleasableBackend(Protocol):
    """Optional: hand leases back at once (graceful shutdown), without counting the delivery."""

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Make the leased tasks ready again now, as if they had not been delivered."""
        ...


@runtime_checkable
class IdempotencyKeyBackend(Protocol):
    """Optional: the backend honours :attr:`DurableTask.idempotency_key` (at most one live task per key).

    ``enqueue`` and ``enqueue_many`` raise :class:`~worker_core.errors.DurableTaskExistsError` for a task whose
    key belongs to a live task (``enqueue_many`` skips it and names it in ``ids``, like a duplicate id, and a
    key repeated within one batch keeps the first task). The manager refuses a task with a key when its
    backend does not implement this protocol.
    """

    #: Always ``True``: the backend enforces idempotency keys.
    supports_idempotency_keys: bool


@runtime_checkable
class WakeableBackend(Protocol):
    """Optional: block until work may be ready instead of polling."""

    async def wait_for_work(self, max_wait: float) -> None:
        """Return when a task may have become ready, or after ``max_wait`` seconds at the latest."""
        ...
