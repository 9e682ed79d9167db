"""Task <-> row conversions: the enqueue statement's arrays, and leases from the claim's rows.

PostgreSQL ``text`` and ``jsonb`` cannot hold a NUL character: a handler, queue, metadata entry or idempotency
key with one is rejected with :class:`~worker_core.errors.InvalidTaskError` before anything is written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker_core.durable.types import IDEMPOTENCY_KEY_LIMIT, DurableTask, DurableTaskLease
from worker_core.errors import InvalidTaskError

__all__ = ("Claimed", "enqueue_params", "enqueue_row", "normalize_queue", "parse_claim")

_INT32 = 2**31 - 1
_SINGULAR = {  # the enqueue arrays' names to the one-row statements' parameter names
    "ids": "id", "delays": "delay", "keys": "key", "queues": "queue", "handlers": "handler",
    "payloads": "payload", "priorities": "priority", "weights": "weight",
}  # fmt: skip


def normalize_queue(name: object, default: str = "default") -> str:
    """A queue name stripped of surrounding blanks; an empty one means ``default``."""
    text = name.strip() if isinstance(name, str) else ""
    return text or default


def _text(value: object, what: str, task_id: object) -> str:
    if not isinstance(value, str):
        raise InvalidTaskError(f"durable task {task_id}: {what} must be a string, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidTaskError(f"durable task {task_id}: {what} contains a NUL character (PostgreSQL text cannot)")
    return value


def _int(value: object, what: str, task_id: object) -> int:
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidTaskError(f"durable task {task_id}: {what} must be an integer, not {value!r}") from None
    if not -_INT32 <= number <= _INT32:
        raise InvalidTaskError(f"durable task {task_id}: {what} {number} is out of range")
    return number


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def enqueue_params(tasks: Sequence[DurableTask], default_queue: str) -> tuple[dict[str, list[Any]], list[uuid.UUID]]:
    """The enqueue statement's arrays for ``tasks`` (all checked first), and their ids in order.

    Raises:
        InvalidTaskError: a task without id, handler or encoded payload, or with a field PostgreSQL cannot store.
    """
    cols: dict[str, list[Any]] = {
        name: []
        for name in (
            "ids", "queues", "handlers", "payloads", "priorities", "weights", "retries", "delays", "metadata",
            "keys", "run_at",
        )
    }  # fmt: skip
    ids: list[uuid.UUID] = []
    for task in tasks:
        task_id = task.id
        if not isinstance(task_id, uuid.UUID):
            raise InvalidTaskError("durable task id is required (a uuid.UUID)")
        handler = _text(task.handler, "handler", task_id)
        if not handler.strip():
            raise InvalidTaskError(f"durable task {task_id}: handler is required")
        payload: object = task.payload
        if payload is None:
            raise InvalidTaskError(f"durable task {task_id}: payload is not encoded (the manager encodes message)")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidTaskError(f"durable task {task_id}: payload must be bytes, not {type(payload).__name__}")
        queue = normalize_queue(_text(task.queue, "queue", task_id), default_queue)
        metadata: str | None = None
        if task.metadata:
            items: list[tuple[object, object]] = list(task.metadata.items())
            for key, value in items:
                if not isinstance(key, str) or not isinstance(value, str):
                    raise InvalidTaskError(f"durable task {task_id}: metadata must map strings to strings")
                _text(key, "metadata key", task_id)
                _text(value, "metadata value", task_id)
            metadata = json.dumps(dict(task.metadata), ensure_ascii=False)
        key_value: object = task.idempotency_key
        idempotency_key = None if key_value is None else _text(key_value, "idempotency_key", task_id)
        if idempotency_key is not None and not (0 < len(idempotency_key) <= IDEMPOTENCY_KEY_LIMIT):
            raise InvalidTaskError(
                f"durable task {task_id}: idempotency_key must be 1-{IDEMPOTENCY_KEY_LIMIT} characters"
            )
        retry_delay = float(task.retry_delay or 0.0)
        if not 0.0 <= retry_delay < 1e12:
            raise InvalidTaskError(f"durable task {task_id}: retry_delay must be >= 0 seconds, not {retry_delay!r}")
        cols["ids"].append(task_id)
        cols["queues"].append(queue)
        cols["handlers"].append(handler)
        cols["payloads"].append(bytes(payload))
        cols["priorities"].append(_int(task.priority, "priority", task_id))
        cols["weights"].append(max(_int(task.weight, "weight", task_id), 1))
        cols["retries"].append(max(_int(task.retries or 0, "retries", task_id), 0))
        cols["delays"].append(retry_delay)
        cols["metadata"].append(metadata)
        cols["keys"].append(idempotency_key)
        cols["run_at"].append(None if task.run_at is None else _epoch(task.run_at))
        ids.append(task_id)
    return cols, ids


def enqueue_row(task: DurableTask, default_queue: str) -> tuple[dict[str, Any], uuid.UUID]:
    """The one-row enqueue statements' parameters for ``task`` (checked as :func:`enqueue_params`), and its id."""
    params, ids = enqueue_params([task], default_queue)
    return {_SINGULAR.get(name, name): values[0] for name, values in params.items()}, ids[0]


class Claimed:
    """What one claim returned: leases in order, the tasks dead-lettered instead, corrupt rows, the next due time."""

    __slots__ = ("corrupt", "dead", "due_in", "leases")

    def __init__(self) -> None:
        self.leases: list[DurableTaskLease] = []
        self.dead: list[tuple[DurableTask, int, str]] = []  # (task, attempts, reason): past the delivery limit
        self.corrupt: list[tuple[DurableTaskLease, str]] = []  # leased, to be dead-lettered by the caller
        self.due_in: float | None = None  # seconds until the next task may be due (None: nothing stored)


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("metadata is not a JSON object of strings")
    return dict(value) or None


def parse_claim(rows: Sequence[Sequence[Any]]) -> Claimed:
    """Split the claim's rows (``due_in``, ``ord``, ``picked_queue``, then the task columns) into a :class:`Claimed`."""
    out = Claimed()
    for row in rows:
        if out.due_in is None and row[0] is not None:
            out.due_in = float(row[0])
        if row[1] is None:  # the one row of an empty claim
            continue
        (_, _, _, task_id, queue, handler, payload, priority, weight, retries, delay, meta, attempts, token) = row[:14]
        state, expires, key = row[14], row[15], row[16]
        problem = ""
        try:
            metadata = _metadata(meta)
        except ValueError as exc:
            metadata, problem = None, f"corrupt record: {exc}"
        if not problem and not str(handler).strip():
            problem = "corrupt record: empty handler"
        task = DurableTask(
            str(handler),
            None,
            bytes(payload),
            id=task_id,
            priority=int(priority),
            queue=str(queue),
            weight=int(weight),
            retries=max(int(retries), 0),
            retry_delay=float(delay),
            metadata=metadata,
        )
        task.idempotency_key = key
        if state == "dead":
            out.dead.append((task, int(attempts), f"delivery limit: delivered {attempts} times without settling"))
            continue
        lease = DurableTaskLease(
            task=task,
            lease_id=str(task_id),
            attempts=int(attempts),
            max_retries=max(int(retries), 0),
            token=str(token),
            expires_at=float(expires),
        )
        if problem:
            out.corrupt.append((lease, problem))
        else:
            out.leases.append(lease)
    return out
