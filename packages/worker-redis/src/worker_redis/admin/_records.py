"""Redis hashes decoded into worker-core's admin records, and the go-worker snapshot format."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker_core.admin.records import (
    DLQEntry,
    DLQEntryDetail,
    DLQPage,
    MoveResult,
    NodeInfo,
    Overview,
    PauseState,
    PurgeResult,
    QueueInfo,
    TaskRecord,
    TaskState,
    parse_weights,
    rfc3339,
)
from worker_core.durable.types import lease_holder
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
    "node_from_fields",
    "parse_metadata",
    "record_from_fields",
    "rfc3339",
)


def _float(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


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


def node_from_fields(node_id: str, fields: Mapping[bytes, bytes]) -> NodeInfo:
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

    return NodeInfo(
        id=node_id,
        host=str(info.get("host", "")),
        pid=number(info.get("pid")),
        started_ms=number(_float(info.get("started")) * 1000),
        queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
        running=number(info.get("running")),
        last_seen_ms=number(fields.get(b"last_seen_ms")),
        weights=parse_weights(info.get("weights")),
    )


def record_from_fields(
    task_id: str,
    status: TaskState,
    fields: Mapping[str, bytes],
    *,
    score: int = 0,
    default_queue: str = DEFAULT_QUEUE,
) -> TaskRecord:
    """Build from a task hash (field name -> raw bytes)."""
    return TaskRecord(
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
        leased_by=lease_holder(_text(fields.get("lease_token"))) if status is TaskState.PROCESSING else "",
    )


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
