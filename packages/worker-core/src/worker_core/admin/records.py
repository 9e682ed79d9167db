"""The typed records every durable backend's admin returns (:class:`~worker_core.admin.DurableAdmin`).

Plain frozen dataclasses with a ``to_json()`` each (what ``workerctl ... --json`` and the dashboard's JSON API
print). Times are epoch milliseconds; :func:`rfc3339` formats them as go-worker's dump does.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = (
    "DLQEntry",
    "DLQEntryDetail",
    "DLQPage",
    "MoveResult",
    "NodeInfo",
    "Overview",
    "PauseState",
    "PurgeResult",
    "QueueInfo",
    "TaskRecord",
    "TaskState",
    "parse_weights",
    "rfc3339",
)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One live worker node, from its last heartbeat."""

    id: str
    host: str
    pid: int
    started_ms: int
    queues: tuple[str, ...]  # empty: every queue
    running: int  # leases the node held at its last heartbeat
    last_seen_ms: int
    weights: Mapping[str, int] = field(default_factory=dict)  # queue weights it was configured with (others: 1)

    def to_json(self) -> dict[str, Any]:
        """The node as a JSON object (``workerctl durable workers --json``)."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started": rfc3339(self.started_ms) if self.started_ms else "",
            "queues": list(self.queues) or "all",
            "running": self.running,
            "last_seen": rfc3339(self.last_seen_ms) if self.last_seen_ms else "",
            "weights": dict(self.weights),
        }


def parse_weights(value: object) -> dict[str, int]:
    """The ``weights`` of a heartbeat's JSON (``{queue: weight}``), checked.

    Entries whose weight is not a positive int are left out; anything but an object (an older heartbeat has no
    such key) gives ``{}``.
    """
    if not isinstance(value, Mapping):
        return {}
    return {
        str(name): weight
        for name, weight in value.items()
        if isinstance(weight, int) and not isinstance(weight, bool) and weight > 0
    }


class TaskState(enum.StrEnum):
    """Where a task's id is: a queue's ready or processing set, the DLQ, or nowhere (``unknown``)."""

    READY = "ready"
    PROCESSING = "processing"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """Counts of one queue. ``dead`` is ``None`` when the DLQ was too long to count per queue."""

    name: str
    ready: int
    processing: int
    dead: int | None
    paused: bool
    due: int = 0  # ready tasks due now (``ready`` counts delayed ones too): the backlog
    oldest_due_age_s: float = 0.0  # how long the oldest due task has waited (0.0: none is due)

    def to_json(self) -> dict[str, Any]:
        """The queue as a JSON object (``stats --json``, ``queues --json``)."""
        return {
            "name": self.name,
            "ready": self.ready,
            "processing": self.processing,
            "dead": self.dead,
            "paused": self.paused,
            "due": self.due,
            "oldest_due_age_s": round(self.oldest_due_age_s, 3),
        }


@dataclass(frozen=True, slots=True)
class Overview:
    """One consistent read of the deployment: pause flags, per-queue counts and the DLQ length."""

    queues: tuple[QueueInfo, ...]
    dead: int
    paused: bool
    paused_queues: tuple[str, ...]

    @property
    def total_ready(self) -> int:
        """Ready tasks over the listed queues."""
        return sum(q.ready for q in self.queues)

    @property
    def total_processing(self) -> int:
        """Leased tasks over the listed queues."""
        return sum(q.processing for q in self.queues)

    def to_json(self) -> dict[str, Any]:
        """``{"queues": [...], "total_ready", "total_processing", "dead", "paused", "paused_queues"}``."""
        return {
            "queues": [q.to_json() for q in self.queues],
            "total_ready": self.total_ready,
            "total_processing": self.total_processing,
            "dead": self.dead,
            "paused": self.paused,
            "paused_queues": list(self.paused_queues),
        }


@dataclass(frozen=True, slots=True)
class PauseState:
    """The global pause flag and the paused queues."""

    paused: bool
    paused_queues: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MoveResult:
    """Outcome of a requeue, replay or delete: how many tasks changed, and the ids that exist nowhere."""

    count: int
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """Entries removed by a purge, per queue for the ready and processing sets."""

    ready: Mapping[str, int] = field(default_factory=dict)
    processing: Mapping[str, int] = field(default_factory=dict)
    dead: int | None = None  # None: the DLQ was not purged


@dataclass(frozen=True, slots=True)
class DLQEntry:
    """One DLQ entry as the admin list shows it (go-worker's AdminDLQEntry summary)."""

    id: str
    queue: str
    handler: str
    attempts: int
    age_ms: int
    last_error: str

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object."""
        return {
            "id": self.id,
            "queue": self.queue,
            "handler": self.handler,
            "attempts": self.attempts,
            "age_ms": self.age_ms,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class DLQPage:
    """A page of the DLQ, newest first. ``scanned`` entries were read; ``truncated`` if the scan bound hit."""

    entries: tuple[DLQEntry, ...]
    total: int
    offset: int
    limit: int
    scanned: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class DLQEntryDetail:
    """Everything about one dead task except its payload bytes."""

    entry: DLQEntry
    failed_at_ms: int
    updated_at_ms: int
    payload_size: int
    metadata: Mapping[str, str]
    error_type: str = ""
    traceback: str = ""


def rfc3339(ms: int) -> str:
    """Epoch ms as go-worker's dump prints it: RFC3339, UTC, second precision."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One stored task, with its state. ``score`` is its ready-at or lease-expiry ms (0 for others)."""

    id: str
    status: TaskState
    handler: str
    queue: str
    priority: int
    weight: int
    retries: int
    retry_delay_ms: int
    attempts: int
    ready_at_ms: int
    updated_at_ms: int
    lease_at_ms: int
    failed_at_ms: int
    last_error: str
    metadata: Mapping[str, str]
    payload_size: int
    score: int = 0
    error_type: str = ""  # ours: the exception type of the last failure
    error_traceback: str = ""  # ours: its traceback, bounded
    dead_reason: str = ""  # ours: "failed", or why the dequeue script moved the task aside ("delivery limit: ...")
    leased_by: str = ""  # ours: the node holding the lease of a processing task ("" when unknown or not leased)

    def to_dump(self, *, include_metadata: bool = False) -> dict[str, Any]:
        """go-worker's dump record: id and status always, other keys only when not empty or zero."""
        record: dict[str, Any] = {"id": self.id, "status": self.status.value}
        optional: dict[str, Any] = {
            "handler": self.handler,
            "queue": self.queue,
            "priority": self.priority,
            "weight": self.weight,
            "retries": self.retries,
            "attempts": self.attempts,
            "ready_at": rfc3339(self.ready_at_ms) if self.ready_at_ms else "",
            "updated_at": rfc3339(self.updated_at_ms) if self.updated_at_ms else "",
        }
        if include_metadata:
            optional["metadata"] = dict(self.metadata)
        record.update({k: v for k, v in optional.items() if v})
        return record

    def to_json(self) -> dict[str, Any]:
        """Every field (``get --json``): the dump record plus the raw timestamps, error and payload size."""
        record = self.to_dump(include_metadata=True)
        record.update(
            {
                "metadata": dict(self.metadata),
                "retry_delay_ms": self.retry_delay_ms,
                "ready_at_ms": self.ready_at_ms,
                "updated_at_ms": self.updated_at_ms,
                "lease_at_ms": self.lease_at_ms,
                "failed_at_ms": self.failed_at_ms,
                "last_error": self.last_error,
                "payload_size": self.payload_size,
                "score": self.score,
                "leased_by": self.leased_by,
            }
        )
        return record
