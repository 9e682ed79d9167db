"""Admission of in-memory tasks: whether the manager takes new ones, the checks, the defaults, the queueing.

``register_task`` runs :meth:`Intake.register` and nothing else: one place decides whether a task is accepted
and in what shape (default queue, weight, retries) it waits.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from worker_core import task as records
from worker_core.errors import InvalidTaskError, ManagerStoppedError, QueueFullError, TaskExistsError
from worker_core.options import epoch_seconds

from .scheduler import PRIORITY_MAX, PRIORITY_MIN

if TYPE_CHECKING:
    from worker_core.events import EventPipeline, Pending
    from worker_core.options import ManagerOptions
    from worker_core.task import Task

    from .pool import WorkerPool
    from .registry import TaskRegistry
    from .scheduler import Scheduler

__all__ = ("Intake",)

_time: Final = time.time


class Intake:
    """Takes tasks in while open; owns the ``scheduled`` counter."""

    __slots__ = ("_events", "_loop", "_options", "_pool", "_registry", "_scheduler", "open", "scheduled")

    def __init__(
        self,
        options: ManagerOptions,
        registry: TaskRegistry,
        scheduler: Scheduler,
        pool: WorkerPool,
        events: EventPipeline,
    ) -> None:
        self._options = options
        self._registry = registry
        self._scheduler = scheduler
        self._pool = pool
        self._events = events
        self._loop: asyncio.AbstractEventLoop | None = None
        self.open = True  # False once a stop began: nothing more is taken in
        self.scheduled = 0  # tasks accepted so far

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The manager's loop (delayed tasks are due on its clock)."""
        self._loop = loop

    def close(self) -> None:
        """Take nothing more in (a stop began)."""
        self.open = False

    def check_open(self) -> None:
        """Raises :class:`ManagerStoppedError` once the intake closed."""
        if not self.open:
            raise ManagerStoppedError("the task manager is not accepting new tasks")

    def register(self, task: Task[Any]) -> Pending:
        """Queue ``task`` (its checks done here); its async ``on_queued`` hook to await, if any.

        Raises:
            ManagerStoppedError, TaskExistsError, QueueFullError, InvalidTaskError: see ``register_task``.
        """
        if not self.open:
            raise ManagerStoppedError("the task manager is not accepting new tasks")
        if records.status(task) is not None:
            raise TaskExistsError(f"task {task.id} was already registered")
        scheduler = self._scheduler
        ready = scheduler.ready
        options = self._options
        if ready.size + scheduler.delayed.size >= options.max_tasks:
            raise QueueFullError(f"queue is full (max {options.max_tasks})")
        # The fields a user may have changed since construction, checked (exact types: the quick test), and
        # the manager's defaults applied.
        priority: object = task.priority
        weight: object = task.weight
        queue: object = task.queue
        execute: object = task.execute
        if (
            type(priority) is not int
            or type(weight) is not int
            or type(queue) is not str
            or not callable(execute)
            or not PRIORITY_MIN <= priority <= PRIORITY_MAX
        ):
            _raise_invalid(task)
        task.queue = task.queue.strip() or options.default_queue
        if task.weight <= 0:
            task.weight = 1
        retries = task.retries
        if retries is None:
            retries = options.max_retries
        elif retries > options.max_retries:
            records.mark_invalid(task)
            raise InvalidTaskError(
                f"task {task.id} asks for retries={retries}, more than the manager's max_retries={options.max_retries}"
            )
        due = 0.0
        if task.run_at is not None:
            delay = epoch_seconds(task.run_at) - _time()
            if delay > 0:
                loop = self._loop
                assert loop is not None
                due = loop.time() + delay
        key = records.key(task)
        self._registry.add(task, key)  # raises TaskExistsError for a duplicate id
        events = self._events
        if events.tracer is not None:
            task.metadata = events.inject(task.metadata)
        records.bind(task, retries, options.retry_delay_s if task.retry_delay is None else task.retry_delay)
        self.scheduled += 1
        if due:
            scheduler.add_delayed(task, due)
        else:
            ready.push(task, key)
            pool = self._pool
            if pool.busy < pool.capacity:
                pool.kick()
        return events.scheduled(task) if events.has_scheduled else None


def _raise_invalid(task: Task[Any]) -> None:
    """Raise the InvalidTaskError that says which field of ``task`` is wrong (and mark it INVALID)."""
    priority: object = task.priority
    weight: object = task.weight
    queue: object = task.queue
    execute: object = task.execute
    ints = isinstance(priority, int) and not isinstance(priority, bool) and isinstance(weight, int)
    if not ints or isinstance(weight, bool) or not isinstance(queue, str):
        message = "priority and weight must be int and queue a str"
    elif not callable(execute):
        message = "execute must be callable"
    elif not PRIORITY_MIN <= task.priority <= PRIORITY_MAX:
        message = f"priority must fit in a signed 64-bit int, got {priority}"
    else:
        return  # subclasses of int and str (an IntEnum priority, a StrEnum queue) are fine
    records.mark_invalid(task)
    raise InvalidTaskError(message)
