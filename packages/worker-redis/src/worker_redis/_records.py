"""Task <-> Redis conversions: script arguments for an enqueue, leases from a dequeue reply.

The field formats are go-worker's (the README's "Key layout"): integers as decimal strings, ``retry_delay_ms`` in
milliseconds, ``metadata`` a JSON object of strings (``""`` when empty), ``payload`` the raw bytes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from worker_core.durable.types import IDEMPOTENCY_KEY_LIMIT, TRACEBACK_LIMIT, DurableTask, DurableTaskLease
from worker_core.errors import InvalidTaskError

from .keys import normalize_queue

__all__ = ("LEASE_WIDTH", "TASK_WIDTH", "TRACEBACK_LIMIT", "enqueue_args", "now_ms", "parse_leases")

logger = logging.getLogger(__name__)

#: Values per task in enqueue.lua's ARGV.
TASK_WIDTH = 11
#: Values per lease in dequeue.lua's reply.
LEASE_WIDTH = 13


def now_ms() -> int:
    """Epoch milliseconds on this machine (go-worker also computes every timestamp on the client)."""
    return time.time_ns() // 1_000_000


def _epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def enqueue_args(task: DurableTask, default_queue: str, now: int, out: list[Any]) -> str:
    """Append ``task``'s 10 enqueue.lua values to ``out``; return its queue. Bad fields raise InvalidTaskError."""
    if task.id is None:
        raise InvalidTaskError("durable task id is required")
    handler: object = task.handler
    if not isinstance(handler, str) or not handler.strip():
        raise InvalidTaskError("durable task handler is required")
    payload: object = task.payload
    if payload is None:
        raise InvalidTaskError(f"durable task {task.id}: payload is not encoded (the manager encodes message)")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise InvalidTaskError(f"durable task {task.id}: payload must be bytes, not {type(payload).__name__}")
    queue = normalize_queue(task.queue, default_queue)
    ready = now if task.run_at is None else max(now, _epoch_ms(task.run_at))
    metadata = ""
    if task.metadata:
        items: list[tuple[object, object]] = list(task.metadata.items())
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
            raise InvalidTaskError(f"durable task {task.id}: metadata must map str to str")
        metadata = json.dumps(task.metadata, separators=(",", ":"), ensure_ascii=False)
    delay_ms = round((task.retry_delay or 0.0) * 1000)
    key: object = task.idempotency_key
    if key is not None and (not isinstance(key, str) or not key.strip() or len(key) > IDEMPOTENCY_KEY_LIMIT):
        raise InvalidTaskError(
            f"durable task {task.id}: idempotency_key must be a non-blank str of at most {IDEMPOTENCY_KEY_LIMIT} chars"
        )
    out += (
        str(task.id),
        queue,
        ready,
        task.handler,
        bytes(payload),
        int(task.priority),
        max(0, int(task.retries or 0)),
        max(0, delay_ms),
        metadata,
        task.weight if task.weight > 0 else 1,
        key or "",
    )
    return queue


def _int(value: bytes, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except (ValueError, OverflowError):
            return default


def _metadata(raw: bytes, task_id: str) -> dict[str, str] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        logger.warning("durable task %s has unreadable metadata; ignored", task_id)
        return None
    if not isinstance(value, dict):
        return None
    return {str(k): str(v) for k, v in value.items()}


def parse_leases(
    flat: Sequence[Any], lease_ms: int, now: int
) -> tuple[list[DurableTaskLease], list[tuple[DurableTaskLease, str]]]:
    """Leases from dequeue.lua's flat reply, and the leases that cannot be served here, each with the reason.

    The script already moves corrupt records aside; a record this side still cannot read (a foreign writer's
    id that is not a UUID, say) is returned as ``(lease, reason)`` for the caller to dead-letter, never raised,
    so one record never costs the rest of the batch.
    """
    leases: list[DurableTaskLease] = []
    bad: list[tuple[DurableTaskLease, str]] = []
    expires = (now + lease_ms) / 1000
    for i in range(0, len(flat), LEASE_WIDTH):
        raw_id, handler, payload, prio, retries, delay, attempts, meta, queue, weight, token, _ready, key = flat[
            i : i + LEASE_WIDTH
        ]
        task_id = raw_id.decode(errors="replace")
        retries_n = _int(retries)
        try:
            uid = uuid.UUID(task_id)
            task = DurableTask(
                handler.decode(),
                payload=payload,
                id=uid,
                priority=_int(prio),
                queue=queue.decode(),
                weight=_int(weight, 1) or 1,
                retries=retries_n,
                retry_delay=_int(delay) / 1000,
                metadata=_metadata(meta, task_id),
                idempotency_key=key.decode() if key else None,
            )
        except ValueError as exc:  # not a UUID, or not UTF-8 (UnicodeDecodeError is a ValueError)
            poison = DurableTask(
                handler.decode(errors="replace"), payload=payload, queue=queue.decode(errors="replace")
            )
            lease = DurableTaskLease(
                poison, task_id, _int(attempts), retries_n, token.decode(errors="replace"), expires
            )
            reason = (
                "a field is not UTF-8" if isinstance(exc, UnicodeDecodeError) else f"task id {task_id!r} is not a UUID"
            )
            bad.append((lease, f"corrupt record: {reason}"))
            continue
        leases.append(DurableTaskLease(task, task_id, int(attempts), retries_n, token.decode(), expires))
    return leases, bad
