"""Typed results of the admin operations, and the go-worker record formats (dump, snapshot)."""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker_core.errors import ConfigurationError

from worker_redis.keys import DEFAULT_QUEUE

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
    "SnapshotEntry",
    "TaskRecord",
    "TaskState",
)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One live worker node, from its last heartbeat (``P:node:<id>``)."""

    id: str
    host: str
    pid: int
    started_ms: int
    queues: tuple[str, ...]  # empty: every queue
    running: int  # leases the node held at its last heartbeat
    last_seen_ms: int

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
        }

    @classmethod
    def from_fields(cls, node_id: str, fields: Mapping[bytes, bytes]) -> NodeInfo:
        """Build from a node hash; unreadable fields count as empty (a heartbeat is never trusted blindly)."""
        try:
            info = json.loads(fields.get(b"info") or b"{}")
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        queues = info.get("queues")

        def number(value: object) -> int:
            try:
                return int(float(value))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                return 0

        return cls(
            id=node_id,
            host=str(info.get("host", "")),
            pid=number(info.get("pid")),
            started_ms=number(_float(info.get("started")) * 1000),
            queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
            running=number(info.get("running")),
            last_seen_ms=number(fields.get(b"last_seen_ms")),
        )


def _float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


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


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _int(value: bytes | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


def parse_metadata(value: bytes | None) -> dict[str, str]:
    """Decode the hash's ``metadata`` field (a JSON object of strings, or ``""``); garbage gives ``{}``."""
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def rfc3339(ms: int) -> str:
    """Epoch ms as go-worker's dump prints it: RFC3339, UTC, second precision."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task hash decoded, with its state. ``score`` is its ready-at or lease-expiry ms (0 for others)."""

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

    @classmethod
    def from_fields(
        cls,
        task_id: str,
        status: TaskState,
        fields: Mapping[str, bytes],
        *,
        score: int = 0,
        default_queue: str = DEFAULT_QUEUE,
    ) -> TaskRecord:
        """Build from a task hash (field name -> raw bytes)."""
        return cls(
            id=task_id,
            status=status,
            handler=_text(fields.get("handler")),
            queue=_text(fields.get("queue")) or default_queue,
            priority=_int(fields.get("priority")),
            weight=_int(fields.get("weight")),
            retries=_int(fields.get("retries")),
            retry_delay_ms=_int(fields.get("retry_delay_ms")),
            attempts=_int(fields.get("attempts")),
            ready_at_ms=_int(fields.get("ready_at_ms")),
            updated_at_ms=_int(fields.get("updated_at_ms")),
            lease_at_ms=_int(fields.get("lease_at_ms")),
            failed_at_ms=_int(fields.get("failed_at_ms")),
            last_error=_text(fields.get("last_error")),
            metadata=parse_metadata(fields.get("metadata")),
            payload_size=len(fields.get("payload") or b""),
            score=score,
            error_type=_text(fields.get("error_type")),
            error_traceback=_text(fields.get("error_traceback")),
            dead_reason=_text(fields.get("dead_reason")),
        )

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
            }
        )
        return record


_STATUSES = frozenset({"ready", "processing", "dead"})


@dataclass(frozen=True, slots=True)
class SnapshotEntry:
    """One task in a snapshot: its state, queue, ZSET score and every hash field as raw bytes.

    On the wire (one JSON object per line) this is go-worker's ``{"id","status","queue","score","fields"}``,
    with one deliberate difference: a field whose bytes are not valid UTF-8 (a protobuf payload) goes to
    ``"fields_b64"`` as standard base64 instead of being mangled into ``"fields"``, so binary payloads
    survive the round trip. Snapshots of UTF-8 payloads are exactly go-worker's format.
    """

    id: str
    status: str
    queue: str
    fields: Mapping[str, bytes]
    score: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one snapshot line."""
        text: dict[str, str] = {}
        binary: dict[str, str] = {}
        for name, value in self.fields.items():
            try:
                text[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                binary[name] = base64.b64encode(value).decode("ascii")
        record: dict[str, Any] = {"id": self.id, "status": self.status, "queue": self.queue}
        if self.score:
            record["score"] = self.score
        record["fields"] = text
        if binary:
            record["fields_b64"] = binary
        return record

    @classmethod
    def from_json(cls, data: object, *, where: str = "snapshot entry") -> SnapshotEntry:
        """Validate one decoded snapshot line; a :class:`ConfigurationError` says what is wrong."""
        if not isinstance(data, dict):
            raise ConfigurationError(f"{where}: not a JSON object")
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id.strip():
            raise ConfigurationError(f"{where}: snapshot entry missing id")
        status = data.get("status") or "ready"
        if status not in _STATUSES:
            raise ConfigurationError(f"{where}: status must be ready, processing or dead, not {status!r}")
        score = data.get("score") or 0
        if not isinstance(score, int | float) or isinstance(score, bool):
            raise ConfigurationError(f"{where}: score must be a number")
        fields: dict[str, bytes] = {}
        raw_fields = data.get("fields") or {}
        if not isinstance(raw_fields, dict):
            raise ConfigurationError(f"{where}: fields must be an object of strings")
        for name, value in raw_fields.items():
            if not isinstance(value, str):
                raise ConfigurationError(f"{where}: field {name!r} must be a string")
            fields[name] = value.encode("utf-8")
        raw_b64 = data.get("fields_b64") or {}
        if not isinstance(raw_b64, dict):
            raise ConfigurationError(f"{where}: fields_b64 must be an object of base64 strings")
        for name, value in raw_b64.items():
            try:
                fields[name] = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"{where}: field {name!r} is not valid base64") from None
        queue = data.get("queue") or _text(fields.get("queue")) or DEFAULT_QUEUE
        if not isinstance(queue, str):
            raise ConfigurationError(f"{where}: queue must be a string")
        fields["queue"] = queue.encode("utf-8")
        return cls(id=task_id.strip(), status=str(status), queue=queue, fields=fields, score=int(score))
