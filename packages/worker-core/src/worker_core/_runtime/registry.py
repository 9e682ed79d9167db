"""Every task a manager knows, by id: what ``get_task`` finds, what ``wait()`` waits for, what retention evicts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

from worker_core import task as records
from worker_core.errors import TaskExistsError, TaskNotFoundError
from worker_core.retention import Retention, RetentionPolicy
from worker_core.status import TaskStatus
from worker_core.task import Task

__all__ = ("TaskRegistry",)

_RUNNING = TaskStatus.RUNNING


class TaskRegistry:
    """Tasks by key (the id's int), the count of unfinished in-memory ones, and ``wait()``'s waiters.

    Durable tasks are listed (``get_task`` finds them while this node holds them, and after they finish) but
    not counted by ``wait()``: they belong to the backend, which may hand them to any node.
    """

    __slots__ = ("_tasks", "_waiters", "active", "retention")

    def __init__(self) -> None:
        self._tasks: dict[int, Task[Any]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self.active = 0  # registered in-memory tasks not yet settled
        self.retention = Retention(self._evict, self.__len__)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: int) -> bool:
        return key in self._tasks

    def get(self, key: int) -> Task[Any] | None:
        return self._tasks.get(key)

    def lookup(self, task_id: object) -> Task[Any]:
        """The task with id ``task_id`` (``get_task``).

        Raises:
            TaskNotFoundError: ``task_id`` is not a ``uuid.UUID``, or no task has it (or it was evicted).
        """
        if not isinstance(task_id, uuid.UUID):
            raise TaskNotFoundError(f"task id must be a uuid.UUID, got {type(task_id).__name__}")
        task = self._tasks.get(task_id.int)
        if task is None:
            raise TaskNotFoundError(f"task with ID {task_id} not found")
        return task

    def set_retention(self, policy: RetentionPolicy | None) -> None:
        """Evict finished tasks by ``policy`` from now on (``None``: keep everything); prunes at once.

        Raises:
            ConfigurationError: ``policy`` is not a ``RetentionPolicy``, or a value is out of range.
        """
        self.retention.set(policy, (task for task in self.tasks() if records.completed_mono(task)))

    def tasks(self) -> list[Task[Any]]:
        """Every task, in registration order."""
        return list(self._tasks.values())

    def running(self) -> Iterator[Task[Any]]:
        """Tasks with an attempt running now."""
        return (task for task in list(self._tasks.values()) if task.status is _RUNNING)

    def add(self, task: Task[Any], key: int) -> None:
        """List ``task`` (counted by ``wait()`` unless durable).

        A durable task replaces an older copy with its id: the backend delivered it again (the older lease
        expired), and the newest delivery is the one this node answers for.

        Raises:
            TaskExistsError: an in-memory task with this id (``key``) is listed.
        """
        tasks = self._tasks
        if task.durable:
            tasks[key] = task
            return
        if key in tasks:
            raise TaskExistsError(f"task {task.id} already exists")
        tasks[key] = task
        self.active += 1

    def settled(self, task: Task[Any]) -> None:
        """``task`` is terminal and its hooks are done: release ``wait()`` callers, let retention have it."""
        if not task.durable:
            self.active -= 1
            if not self.active and self._waiters:
                waiters, self._waiters = self._waiters, set()
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        self.retention.note(task, len(self._tasks))

    def forget(self, task: Task[Any]) -> None:
        """Drop a durable ``task`` that this node no longer holds (retried or handed back: not finished here)."""
        key = records.key(task)
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def _evict(self, task: Task[Any]) -> int:
        key = records.key(task)
        tasks = self._tasks
        if tasks.get(key) is task:
            del tasks[key]
        return len(tasks)

    async def wait(self, timeout_s: float | None) -> None:
        """Return once no counted task is unfinished (at once when none is).

        Raises:
            TimeoutError: ``timeout_s`` passed first.
        """
        if not self.active:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        finally:
            self._waiters.discard(waiter)
