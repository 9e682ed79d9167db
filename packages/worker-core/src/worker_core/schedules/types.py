"""Schedule records and the optional backend capability that makes a durable schedule fire once per tick.

Every node that registers a durable schedule computes the same ticks. When one is due, each node asks the
backend to enqueue that tick's task; :meth:`ScheduleBackend.enqueue_tick` writes a marker for the pair
(schedule, tick) and the task in one atomic step, so only the first node's task is stored and the others
hear :attr:`TickResult.DUPLICATE`. There is no leader to elect or fail over: any node alive at a tick fires
it, and a marker outlives clock skew between nodes (its TTL, a few periods and at least a minute).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal, Protocol, runtime_checkable

from worker_core.durable.types import DurableTask

__all__ = (
    "META_SCHEDULE_DURABLE",
    "META_SCHEDULE_MANUAL",
    "META_SCHEDULE_NAME",
    "META_SCHEDULE_QUEUE",
    "META_SCHEDULE_SPEC",
    "META_SCHEDULE_TICK",
    "MissedPolicy",
    "ScheduleBackend",
    "ScheduleEvent",
    "ScheduleInfo",
    "ScheduleRecord",
    "ScheduleState",
    "TickResult",
    "tick_task_id",
)

#: go-worker's schedule metadata keys, set on every task a schedule creates.
META_SCHEDULE_NAME = "worker.schedule.name"
META_SCHEDULE_SPEC = "worker.schedule.spec"
META_SCHEDULE_DURABLE = "worker.schedule.durable"
META_SCHEDULE_QUEUE = "worker.schedule.queue"
#: Ours: the tick (epoch ms) the task was created for, and ``"1"`` for a run asked for by ``trigger_schedule``.
META_SCHEDULE_TICK = "worker.schedule.tick"
META_SCHEDULE_MANUAL = "worker.schedule.manual"

#: What a durable schedule does about ticks that passed while no node ran it: ``"skip"`` them (default), or
#: run ``"once"`` at start for the latest one missed (needs the last fired tick, stored by the backend).
MissedPolicy = Literal["skip", "once"]

_TICK_NAMESPACE = uuid.UUID("7d6f1c8e-2b8a-5c1e-9a52-5c4f2f0b6a01")


def tick_task_id(schedule: str, tick_ms: int) -> uuid.UUID:
    """The id of the task a schedule creates for a tick: the same on every node (a UUID5)."""
    return uuid.uuid5(_TICK_NAMESPACE, f"{schedule}\x00{tick_ms}")


class TickResult(StrEnum):
    """What :meth:`ScheduleBackend.enqueue_tick` did."""

    ENQUEUED = "enqueued"
    """The marker was written and the task stored: this node fired the tick."""
    DUPLICATE = "duplicate"
    """The tick was enqueued already (by another node, or before a restart); nothing was stored."""
    PAUSED = "paused"
    """The schedule is paused in the backend; nothing was stored."""


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    """One thing that happened to a schedule on some node (kept in a bounded list per schedule).

    ``kind``: ``"enqueued"``/``"fired"`` (a tick's task was stored / registered), ``"triggered"`` (a run asked
    for with ``trigger_schedule``), ``"skipped"`` (the manager was not accepting work, or the schedule is
    paused), ``"failed"`` (the factory raised or returned no task, or the backend failed; ``error`` says why).
    """

    schedule: str
    kind: str
    at_ms: int
    tick_ms: int | None = None
    task_id: str = ""
    node: str = ""
    error: str = ""

    def to_json(self) -> dict[str, object]:
        """The event as a JSON object (what backends store)."""
        return {
            "schedule": self.schedule,
            "kind": self.kind,
            "at_ms": self.at_ms,
            "tick_ms": self.tick_ms,
            "task_id": self.task_id,
            "node": self.node,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: object) -> ScheduleEvent | None:
        """An event from :meth:`to_json`'s form; ``None`` for anything else (corrupt data is skipped)."""
        if not isinstance(data, dict):
            return None
        try:
            tick = data.get("tick_ms")
            return cls(
                schedule=str(data["schedule"]),
                kind=str(data["kind"]),
                at_ms=int(data["at_ms"]),
                tick_ms=None if tick is None else int(tick),
                task_id=str(data.get("task_id") or ""),
                node=str(data.get("node") or ""),
                error=str(data.get("error") or ""),
            )
        except (KeyError, TypeError, ValueError):
            return None


#: Seconds a published schedule record stays listed without being published again. Every node republishes its
#: durable schedules every :data:`REPUBLISH_S`; a record no node republished for this long (the schedule was
#: removed from the code, or every node running it is gone) is dropped by the next publication.
PUBLISHED_TTL_S: Final = 3600.0
#: Seconds between two publications of a node's durable schedules (also published at once on every change).
REPUBLISH_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """What a node publishes about a durable schedule it runs (for listings such as ``workerctl``)."""

    name: str
    spec: str
    tz: str
    queue: str
    missed: MissedPolicy = "skip"

    def to_json(self) -> dict[str, str]:
        """The record as a JSON object."""
        return {"name": self.name, "spec": self.spec, "tz": self.tz, "queue": self.queue, "missed": self.missed}


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule's state shared by every node through the backend."""

    paused: bool = False
    last_tick_ms: int | None = None
    last_event: ScheduleEvent | None = None


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One schedule as ``TaskManager.schedules()`` reports it.

    ``next_runs`` are the next tick times (aware, in the schedule's zone). ``last_run``/``last_outcome`` are the
    latest event of the schedule (any node's, for a durable schedule on a backend that shares them): its time
    and kind (``"enqueued"``, ``"fired"``, ``"triggered"``, ``"skipped"``, ``"failed"``); ``last_task_id`` is the
    task it created, if any, and ``last_error`` why it failed. ``paused`` is shared through the backend.
    """

    name: str
    spec: str
    tz: str
    durable: bool
    queue: str
    missed: MissedPolicy
    paused: bool
    next_runs: tuple[datetime, ...]
    last_run: datetime | None = None
    last_outcome: str | None = None
    last_task_id: str = ""
    last_error: str = ""
    fired: int = field(default=0)
    skipped: int = field(default=0)


@runtime_checkable
class ScheduleBackend(Protocol):
    """Optional durable-backend capability: once-per-tick enqueues and schedule state shared by every node.

    Implemented by the in-memory backend, worker-redis, worker-sqlite and worker-postgres. Without it, a durable
    schedule falls back to a plain ``enqueue`` with the tick's deterministic task id (a duplicate is refused while
    the first task is stored, not after it is acked: use a backend with this capability for exactly-once ticks).
    """

    async def enqueue_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, *, node: str = ""
    ) -> TickResult:
        """Store ``task`` for this tick unless the tick's marker exists or the schedule is paused.

        In one atomic step: check the pause flag; set the marker ``(schedule, tick_ms)`` if absent, with a TTL
        of ``ttl`` seconds; store the task; raise the schedule's last tick to ``tick_ms``; push an
        ``"enqueued"`` event naming ``node`` (the firing node). A task id that exists already counts as
        :attr:`TickResult.DUPLICATE`.
        """
        ...

    async def publish_schedules(self, records: Sequence[ScheduleRecord]) -> None:
        """Record the schedules this node runs (by name; the latest publisher's spec wins), stamped now.

        In the same step, drop the records nobody published for :data:`PUBLISHED_TTL_S` seconds (the store
        stays as large as the schedules that live nodes run).
        """
        ...

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule some node published within :data:`PUBLISHED_TTL_S` seconds, by name."""
        ...

    async def schedule_states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """The shared state of each named schedule (a name never seen gets the default state)."""
        ...

    async def set_schedule_paused(self, name: str, paused: bool) -> None:
        """Pause or resume ``name`` on every node (a paused schedule's ticks are skipped)."""
        ...

    async def request_schedule_run(self, name: str) -> None:
        """Ask for one run of ``name`` now; exactly one node's :meth:`take_schedule_runs` gets it."""
        ...

    async def take_schedule_runs(self, names: Sequence[str]) -> list[str]:
        """Remove and return the run requests pending for any of ``names`` (atomic: one taker per request)."""
        ...

    async def record_schedule_event(self, event: ScheduleEvent, limit: int) -> None:
        """Push ``event`` on its schedule's list, keeping the newest ``limit``."""
        ...

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name``, newest first."""
        ...
