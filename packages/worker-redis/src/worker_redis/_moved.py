"""Outcomes of the tasks the dequeue script dead-letters itself (delivery limit, unreadable records).

No attempt settles such a task, so no ack or fail script stores its outcome; without one, a handle awaiting it
would wait out its whole timeout. After a dequeue that moved tasks aside (rare: the list is empty otherwise),
the backend reads what it can of each task (one pipelined ``HMGET`` per task) and stores a ``FAILED`` outcome
with ``outcome.lua`` (its result key, the queue's recent list, the ``done`` channel), the same writes the fail
script makes.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from worker_core.durable.outcomes import dead_letter_outcome

from .keys import Keys

__all__ = ("store_moved_outcomes",)

logger = logging.getLogger("worker_redis")

_FIELDS = ("handler", "queue", "attempts", "metadata")


async def store_moved_outcomes(
    client: Any,
    script: Any,
    keys: Keys,
    moved: Sequence[bytes],
    *,
    ttl_ms: int,
    recent_limit: int,
    default_queue: str,
) -> int:
    """Store an outcome for each ``(id, reason)`` pair of ``moved`` whose id is a task id; how many were stored.

    Errors propagate (the caller logs them: the tasks are dead-lettered either way).
    """
    pairs: list[tuple[uuid.UUID, str]] = []
    for i in range(0, len(moved) - 1, 2):
        try:
            task_id = uuid.UUID(moved[i].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            continue  # not a task id: nobody can await it
        pairs.append((task_id, moved[i + 1].decode("utf-8", "replace")))
    if not pairs:
        return 0
    pipe = client.pipeline(transaction=False)
    for task_id, _ in pairs:
        pipe.hmget(keys.task(str(task_id)), _FIELDS)
    rows = await pipe.execute(raise_on_error=False)
    stored = 0
    for (task_id, reason), row in zip(pairs, rows, strict=True):
        handler, queue, attempts, metadata = row if isinstance(row, list) else (None, None, None, None)
        queue_name = _text(queue) or default_queue
        outcome = dead_letter_outcome(
            task_id,
            reason,
            handler=_text(handler),
            queue=queue_name,
            attempts=_int(attempts),
            metadata=_metadata(metadata),
        )
        sid = str(task_id)
        stored += int(
            await script(
                keys=[keys.result(sid), keys.recent(queue_name)],
                args=[sid, outcome.encode(), ttl_ms, recent_limit, keys.done(sid)],
            )
        )
    return stored


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _int(value: object) -> int:
    try:
        return int(value) if isinstance(value, bytes) else 0
    except ValueError:
        return 0


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, bytes) or not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
