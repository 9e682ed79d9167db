"""Helpers for dead-letter tests of any durable backend: make dead tasks, and the outcome a manager stores."""

from __future__ import annotations

import uuid
from typing import Any

from worker_core.durable.outcomes import TaskOutcome, outcome_for
from worker_core.durable.types import DurableBackend, DurableTask, DurableTaskLease
from worker_core.status import TaskStatus

__all__ = ("dead_letter_tasks", "failed_outcome")


async def dead_letter_tasks(backend: DurableBackend, n: int = 1, **fields: Any) -> list[str]:
    """Enqueue, lease and fail ``n`` tasks (``retries=0``, handler ``"h"``) one by one; their ids, oldest first.

    ``fields`` go to each :class:`~worker_core.durable.DurableTask` (an ``idempotency_key``, a ``queue``). The
    backend must hold no other ready task: each lease taken is the task just enqueued.
    """
    ids: list[str] = []
    for _ in range(n):
        task = DurableTask("h", payload=b"p", id=uuid.uuid4(), retries=0, **fields)
        await backend.enqueue(task)
        (lease,) = await backend.dequeue(1, 30.0)
        await backend.fail(lease, "boom")
        ids.append(str(task.id))
    return ids


def failed_outcome(lease: DurableTaskLease) -> TaskOutcome:
    """The ``FAILED`` outcome a manager would store with ``fail_with_outcome`` for ``lease``."""
    return outcome_for(lease, TaskStatus.FAILED, None, None)
