"""One registered schedule and the firing of its ticks (the factory call, the task's metadata, the outcome).

A :class:`Firing` is the small typed port the runner fires through; the engine implements it over its intake
(in-process tasks) and its durable registrar (durable tasks), so nothing here reaches into the manager.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker_core.durable.types import DurableTask
from worker_core.errors import error_text
from worker_core.task import Task

from .spec import Spec
from .types import (
    META_SCHEDULE_DURABLE,
    META_SCHEDULE_MANUAL,
    META_SCHEDULE_NAME,
    META_SCHEDULE_QUEUE,
    META_SCHEDULE_SPEC,
    META_SCHEDULE_TICK,
    MissedPolicy,
    ScheduleEvent,
    TickResult,
    tick_task_id,
)

__all__ = ("Entry", "Factory", "Firing", "fire")

logger = logging.getLogger("worker_core.schedules")

#: A schedule's factory: no arguments; returns (or resolves to) a Task in process, a DurableTask when durable.
Factory = Callable[[], Any]

_PENDING_CAP = 64  # ticks waiting to fire per schedule while an earlier one still fires
_LOCAL_EVENTS = 100


class Firing(Protocol):
    """What the runner needs from the manager to fire a tick."""

    def accepting(self) -> bool:
        """Whether the manager takes new work (running, not stopping)."""
        ...

    async def register_local(self, task: Task[Any]) -> uuid.UUID:
        """Register an in-process task."""
        ...

    async def register_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str = ""
    ) -> TickResult:
        """Enqueue a durable tick's task exactly once (``task.id`` is set to the stored id)."""
        ...

    async def register_durable(self, task: DurableTask) -> uuid.UUID:
        """Enqueue a durable task (a manual run)."""
        ...

    def default_queue(self) -> str:
        """The manager's default queue."""
        ...


@dataclass(slots=True, eq=False)
class Entry:
    """A registered schedule: its spec and factory, its next tick, and what it did lately."""

    name: str
    spec: Spec
    factory: Factory
    durable: bool
    missed: MissedPolicy
    ttl_s: float
    next_ms: int = 0
    generation: int = 0
    paused: bool = False  # in-process schedules only (durable ones keep the flag in the backend)
    queue: str = ""
    fired: int = 0
    skipped: int = 0
    pending: deque[tuple[int | None, bool]] = field(default_factory=deque)
    firing: asyncio.Task[None] | None = None
    events: deque[ScheduleEvent] = field(default_factory=lambda: deque(maxlen=_LOCAL_EVENTS))

    def push(self, tick_ms: int | None, manual: bool) -> bool:
        """Queue a tick to fire; False (and the tick skipped) when too many wait already."""
        if len(self.pending) >= _PENDING_CAP:
            self.skipped += 1
            logger.warning(
                "schedule %r: %d ticks wait to fire already; tick %s skipped", self.name, _PENDING_CAP, tick_ms
            )
            return False
        self.pending.append((tick_ms, manual))
        return True


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _made(factory: Factory) -> object:
    made = factory()
    if inspect.isawaitable(made):
        made = await made
    return made


def _describe(exc: BaseException) -> str:
    text = error_text(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def fire(
    entry: Entry, tick_ms: int | None, manual: bool, port: Firing, node: str, now_ms: Callable[[], int] = _now_ms
) -> ScheduleEvent:
    """Fire one tick of ``entry`` (``tick_ms`` ``None``/``manual``: a run asked for); the event it produced.

    Never raises (but a cancellation of the caller): a factory that raises anything, returns no task or a task
    the manager rejects gives a ``"failed"`` event; a manager that does not accept work, a ``"skipped"`` one.
    """

    def event(kind: str, task_id: object = "", error: str = "") -> ScheduleEvent:
        return ScheduleEvent(entry.name, kind, now_ms(), tick_ms, str(task_id or ""), node, error)

    if not port.accepting():
        return event("skipped", error="the manager is not accepting work")
    if entry.paused and not manual:
        return event("skipped", error="paused")
    try:
        made = await _made(entry.factory)
    except asyncio.CancelledError as exc:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
        return _failed(entry, event("failed", error=_describe(exc)), exc)
    except BaseException as exc:
        return _failed(entry, event("failed", error=_describe(exc)), exc)
    kind = DurableTask if entry.durable else Task
    if not isinstance(made, kind):
        got = type(made).__name__
        return _failed(entry, event("failed", error=f"the factory returned {got}, not a {kind.__name__}"), None)
    queue = made.queue or port.default_queue()
    entry.queue = queue
    metadata = dict(made.metadata or {})
    metadata.update(
        {
            META_SCHEDULE_NAME: entry.name,
            META_SCHEDULE_SPEC: entry.spec.text,
            META_SCHEDULE_DURABLE: "true" if entry.durable else "false",
            META_SCHEDULE_QUEUE: queue,
        }
    )
    if tick_ms is not None:
        metadata[META_SCHEDULE_TICK] = str(tick_ms)
    if manual:
        metadata[META_SCHEDULE_MANUAL] = "1"
    made.metadata = metadata
    try:
        if isinstance(made, Task):
            task_id: uuid.UUID = await port.register_local(made)
            return event("triggered" if manual else "fired", task_id)
        if manual or tick_ms is None:
            return event("triggered", await port.register_durable(made))
        if made.id is None:
            made.id = tick_task_id(entry.name, tick_ms)
        result = await port.register_tick(made, entry.name, tick_ms, entry.ttl_s, node)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _failed(entry, event("failed", error=_describe(exc)), exc)
    if result is TickResult.ENQUEUED:
        return event("enqueued", made.id)
    if result is TickResult.PAUSED:
        return event("skipped", error="paused")
    return event("duplicate", made.id)


def _failed(entry: Entry, event: ScheduleEvent, exc: BaseException | None) -> ScheduleEvent:
    logger.error("schedule %r: tick %s failed: %s", entry.name, event.tick_ms, event.error, exc_info=exc)
    return event


def job_factory(job: Callable[[], Any]) -> tuple[str, Factory]:
    """For ``@tm.cron``/``@tm.every``: the default name and the factory of the task that runs ``job()``.

    ``job`` is a :func:`~worker_core.define_task` declaration (its options apply) or a function of no arguments.
    """
    from worker_core.submit import NO_OPTIONS, TaskDefinition, build_task

    if not callable(job):
        raise TypeError(f"a scheduled job must be callable, got {type(job).__name__}")
    name = job.recipe.name if isinstance(job, TaskDefinition) and job.recipe.name else None
    name = name or getattr(job, "__qualname__", None) or type(job).__qualname__

    def factory() -> Task[Any]:
        return build_task(job, (), {}, NO_OPTIONS)

    return str(name), factory
