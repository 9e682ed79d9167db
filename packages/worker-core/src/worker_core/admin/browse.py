"""Optional admin capabilities beside :class:`~worker_core.admin.DurableAdmin`, checked at run time.

A dashboard (or any tool) tests ``isinstance(admin, TaskBrowser)`` and degrades when a backend lacks one:

* :class:`TaskBrowser`: list tasks by state with filters and paging, newest first, and read one payload.
* :class:`ScheduleAdmin`: list periodic schedules with their next and last run, pause, resume, run now, events
  (:class:`~worker_core.admin.ScheduleStoreAdmin` implements it over a backend's shared schedule state).

Both are bounded: a browse reads at most :data:`BROWSE_SCAN_LIMIT` entries and says so with ``truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from worker_core.schedules.types import ScheduleEvent

from .records import TaskRecord, rfc3339

__all__ = (
    "BROWSE_PAGE_LIMIT",
    "BROWSE_SCAN_LIMIT",
    "BROWSE_STATES",
    "ScheduleAdmin",
    "ScheduleSummary",
    "TaskBrowser",
    "TaskPage",
)

#: The states :meth:`TaskBrowser.browse_tasks` lists: due ready tasks, ready tasks due later, leased, dead.
BROWSE_STATES = ("ready", "delayed", "processing", "dead")
#: Tasks one browse page returns at most.
BROWSE_PAGE_LIMIT = 200
#: Entries one browse reads at most (filters and deep offsets stop there, with ``truncated``).
BROWSE_SCAN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of :meth:`TaskBrowser.browse_tasks`, newest first.

    ``scanned`` entries were read to fill it; ``truncated`` means the scan bound stopped the walk before the
    page was full or the source was exhausted (narrow the filters); ``has_more`` that a next page exists.
    """

    tasks: tuple[TaskRecord, ...]
    state: str
    offset: int
    limit: int
    scanned: int
    truncated: bool
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        """The page as a JSON object (the dashboard's ``/api/tasks``)."""
        return {
            "tasks": [t.to_json() for t in self.tasks],
            "state": self.state,
            "offset": self.offset,
            "limit": self.limit,
            "scanned": self.scanned,
            "truncated": self.truncated,
            "has_more": self.has_more,
        }


@runtime_checkable
class TaskBrowser(Protocol):
    """Optional: list a store's tasks by state, filtered and paged, newest first (bounded reads only)."""

    async def browse_tasks(
        self,
        state: str,
        *,
        queue: str = "",
        handler: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
        limit: int = 50,
        offset: int = 0,
    ) -> TaskPage:
        """A page of tasks in ``state`` (one of :data:`BROWSE_STATES`), newest first.

        ``queue`` and ``handler`` match exactly (empty: any). ``since_ms``/``until_ms`` (epoch ms, 0: no bound)
        bound the state's own time: ready-at for ``ready`` and ``delayed``, lease expiry for ``processing``,
        failure time for ``dead``. ``limit`` is at most :data:`BROWSE_PAGE_LIMIT`.

        Raises:
            ConfigurationError: an unknown state, a bad limit or offset.
        """
        ...

    async def task_payload(self, task_id: str) -> bytes:
        """The stored payload bytes of one task (TaskNotFoundError when there is no such task)."""
        ...


@dataclass(frozen=True, slots=True)
class ScheduleSummary:
    """One periodic schedule as an admin lists it. Times are epoch ms (0: never / not planned).

    Not :class:`worker_core.schedules.ScheduleInfo` (what ``TaskManager.schedules()`` reports about the schedules
    of one manager): this is the store's view, shared by every node. ``handler`` is ``""`` when the store does
    not know it (a durable schedule's task is made by its factory when it fires); ``last_outcome`` is the kind of
    the schedule's latest event (``"enqueued"``, ``"triggered"``, ``"skipped"``, ``"failed"``; ``""``: none).
    """

    name: str
    handler: str
    queue: str
    spec: str  # how it repeats, for display ("*/5 * * * *", "every 30s")
    next_run_ms: int
    last_run_ms: int
    paused: bool
    tz: str = "UTC"
    last_outcome: str = ""

    def to_json(self) -> dict[str, Any]:
        """The schedule as a JSON object."""
        return {
            "name": self.name,
            "handler": self.handler,
            "queue": self.queue,
            "spec": self.spec,
            "next_run": rfc3339(self.next_run_ms) if self.next_run_ms else "",
            "last_run": rfc3339(self.last_run_ms) if self.last_run_ms else "",
            "paused": self.paused,
            "tz": self.tz,
            "last_outcome": self.last_outcome,
        }


@runtime_checkable
class ScheduleAdmin(Protocol):
    """Optional: periodic schedules kept by the store (a backend with schedules support implements it)."""

    async def schedules(self) -> list[ScheduleSummary]:
        """Every schedule, sorted by name (a backend bounds the listing)."""
        ...

    async def pause_schedule(self, name: str) -> None:
        """Stop a schedule from firing (ConfigurationError when unknown)."""
        ...

    async def resume_schedule(self, name: str) -> None:
        """Let a paused schedule fire again (ConfigurationError when unknown)."""
        ...

    async def run_schedule_now(self, name: str) -> str:
        """Ask for one run of the schedule now (ConfigurationError when unknown).

        Returns the id of the task enqueued, or ``""`` when the run is requested from the nodes that run the
        schedule (durable schedules: exactly one of them takes the request at its next poll and enqueues the task;
        its id shows in :meth:`schedule_events`).
        """
        ...

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of the schedule, newest first (``[]`` for a name never seen)."""
        ...
