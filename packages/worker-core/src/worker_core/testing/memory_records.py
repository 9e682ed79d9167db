"""The records of :class:`~worker_core.testing.InMemoryDurableBackend`: stored tasks, queues and snapshots."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from worker_core.durable.types import DurableTask
from worker_core.errors import InvalidTaskError

__all__ = ("DeadLetter", "MemoryTaskState", "State", "Wakeup", "normalise")

State = Literal["ready", "leased", "dead"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered task with the reason it failed, the deliveries it had and when it failed (epoch s)."""

    task: DurableTask
    error: str
    attempts: int
    failed_at: float


@dataclass(frozen=True, slots=True)
class MemoryTaskState:
    """A snapshot of one stored task (from :meth:`InMemoryDurableBackend.get`)."""

    task: DurableTask
    state: State
    attempts: int
    ready_at: float
    lease_expires_at: float | None
    last_error: str | None


@dataclass(slots=True)
class _Record:
    task: DurableTask
    seq: int
    ready_at: float
    state: State = "ready"
    attempts: int = 0
    token: str = ""
    expires_at: float = 0.0
    version: int = 0
    last_error: str = ""
    failed_at: float = 0.0


class _SystemClock:
    def time(self) -> float:
        return time.time()


class _Queue:
    """Two heaps per queue: not yet due (by ready time) and due (by priority, weight, ready time, order)."""

    __slots__ = ("delayed", "due")

    def __init__(self) -> None:
        self.delayed: list[tuple[float, int, int, str]] = []
        self.due: list[tuple[int, int, float, int, int, str]] = []


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _non_blank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _copy(task: DurableTask) -> DurableTask:
    """A copy a consumer may mutate without touching the stored record."""
    return replace(task, metadata=dict(task.metadata) if task.metadata is not None else None)


def normalise(task: DurableTask, now: float, default_queue: str) -> tuple[DurableTask, float]:
    """The record to store for ``task`` and its ready time (``run_at`` or ``now``); nothing is stored.

    Raises:
        InvalidTaskError: no id, no handler, or a payload that is not bytes.
    """
    if task.id is None:
        raise InvalidTaskError("durable task id is required")
    if not _non_blank(task.handler):
        raise InvalidTaskError("durable task handler is required")
    payload = task.payload
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise InvalidTaskError("durable task payload must be bytes (encode the message with a codec first)")
    stored = DurableTask(
        task.handler,
        None,
        bytes(payload),
        id=task.id,
        priority=int(task.priority),
        queue=task.queue.strip() or default_queue,
        weight=max(int(task.weight), 1),
        run_at=task.run_at,
        retries=max(int(task.retries or 0), 0),
        retry_delay=float(task.retry_delay or 0.0),
        metadata=dict(task.metadata) if task.metadata else None,
        idempotency_key=task.idempotency_key,
    )
    ready_at = max(now, _epoch(task.run_at)) if task.run_at is not None else now
    return stored, ready_at


class Wakeup:
    """Wakes :meth:`~worker_core.testing.InMemoryDurableBackend.wait_for_work` (an event of the loop that waits)."""

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        """Wake the waiter, if any."""
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> None:  # noqa: ASYNC109 - the backend's max_wait
        """Wait until :meth:`set` or ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            self._event, self._loop = asyncio.Event(), loop
        self._event.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass
