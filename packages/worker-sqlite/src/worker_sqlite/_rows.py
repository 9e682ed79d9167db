"""Tasks to rows and rows back to leases; a row that cannot be read back is reported, never raised."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from worker_core.durable.types import DurableTask
from worker_core.errors import InvalidTaskError

__all__ = (
    "LEASE_COLUMNS",
    "as_int",
    "as_str",
    "decode_row",
    "json_object",
    "ms",
    "queue_name",
    "string_map",
    "task_row",
)

#: The columns :func:`decode_row` reads, in order.
LEASE_COLUMNS: Final = (
    "seq, id, queue, handler, payload, priority, weight, retries, retry_delay, metadata, attempts, idempotency_key"
)


def queue_name(name: str, default: str) -> str:
    """``name`` stripped of surrounding blanks; an empty one means ``default``."""
    return name.strip() or default


def ms(value: object) -> int:
    """Epoch seconds as whole ms (anything but a finite number: 0)."""
    return int(value * 1000) if isinstance(value, int | float) and math.isfinite(value) else 0


def as_int(value: object) -> int:
    """``value`` if it is an int (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_str(value: object) -> str:
    """``value`` if it is text, else ``""``."""
    return value if isinstance(value, str) else ""


def json_object(value: object) -> dict[str, Any]:
    """The JSON object stored as text in ``value`` (anything else, or text that is not one: ``{}``)."""
    if not isinstance(value, str):
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def string_map(value: object) -> dict[str, str]:
    """:func:`json_object` with keys and values as strings (a task's metadata column)."""
    return {str(k): str(v) for k, v in json_object(value).items()}


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidTaskError(f"durable task {name} must be an integer, got {value!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise InvalidTaskError(f"durable task {name} must be an integer, got {value!r}")
        return int(number)
    return value


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def task_row(task: DurableTask, default_queue: str, now: float) -> tuple[Any, ...]:
    """The row to insert for ``task``, checked.

    ``(id, queue, handler, payload, priority, weight, retries, retry_delay, metadata, idempotency_key, state,
    ready_at, enqueued_at)``.

    Raises:
        InvalidTaskError: no id, no handler, a payload that is not bytes, or a field of the wrong type.
    """
    task_id: object = task.id
    if task_id is None:
        raise InvalidTaskError("durable task id is required")
    if not isinstance(task_id, uuid.UUID):
        raise InvalidTaskError(f"durable task id must be a UUID, got {task_id!r}")
    handler: object = task.handler
    if not isinstance(handler, str) or not handler.strip():
        raise InvalidTaskError("durable task handler is required")
    payload = task.payload
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise InvalidTaskError("durable task payload must be bytes (encode the message with a codec first)")
    raw_queue: object = task.queue
    if not isinstance(raw_queue, str):
        raise InvalidTaskError(f"durable task queue must be a string, got {raw_queue!r}")
    queue = queue_name(raw_queue, default_queue)
    metadata: object = task.metadata
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise InvalidTaskError("durable task metadata must map strings to strings")
    key: object = task.idempotency_key
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidTaskError(f"durable task idempotency_key must be a non-empty string, got {key!r}")
    delay: object = task.retry_delay or 0.0
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise InvalidTaskError(f"durable task retry_delay must be a number of seconds, got {delay!r}")
    ready_at = now
    run_at: object = task.run_at
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise InvalidTaskError(f"durable task run_at must be a datetime, got {run_at!r}")
        ready_at = max(now, _epoch(run_at))
    return (
        str(task_id),
        queue,
        handler,
        bytes(payload),
        _int(task.priority, "priority"),
        max(_int(task.weight, "weight"), 1),
        max(_int(task.retries or 0, "retries"), 0),
        max(float(delay), 0.0),
        json.dumps(metadata, ensure_ascii=False, separators=(",", ":")) if metadata else None,
        key,
        "ready" if ready_at <= now else "delayed",
        ready_at,
        now,
    )


def decode_row(row: Sequence[Any]) -> tuple[DurableTask, int] | str:
    """The task and its attempts so far from a row of :data:`LEASE_COLUMNS`, or why the row is corrupt."""
    _seq, raw_id, queue, handler, payload, priority, weight, retries, delay, metadata, attempts, key = row
    if not isinstance(raw_id, str):
        return "the id is not text"
    try:
        task_id = uuid.UUID(raw_id)
    except ValueError:
        return f"the id {raw_id[:64]!r} is not a UUID"
    if not isinstance(handler, str) or not handler.strip():
        return "the handler is empty or not UTF-8 text"
    if not isinstance(queue, str) or not queue:
        return "the queue is empty or not UTF-8 text"
    if not isinstance(payload, bytes):
        return f"the payload is {type(payload).__name__}, not a blob"
    for name, value in (("priority", priority), ("weight", weight), ("retries", retries), ("attempts", attempts)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} {value!r} is not an integer"
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        return f"retry_delay {delay!r} is not a number"
    meta: dict[str, str] | None = None
    if metadata is not None:
        if not isinstance(metadata, str):
            return "the metadata is not UTF-8 text"
        try:
            meta = json.loads(metadata)
        except ValueError:
            return "the metadata is not JSON"
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            return "the metadata is not an object of strings"
    task = DurableTask(
        handler,
        None,
        bytes(payload),
        id=task_id,
        priority=priority,
        queue=queue,
        weight=weight,
        retries=retries,
        retry_delay=float(delay),
        metadata=meta,
        idempotency_key=key if isinstance(key, str) and key else None,
    )
    return task, attempts
