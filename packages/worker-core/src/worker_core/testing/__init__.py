"""Test support: an in-memory backend, a forwarding wrapper, a manual clock, conformance suites, a fault harness.

The fault harness (:mod:`worker_core.testing.faults`) runs worker processes on a backend URL, kills them for real
and reads their attempt logs.

``DurableBackendConformance``, ``DurableAdminConformance``, ``TaskBrowserConformance``,
``ScheduleBackendConformance`` and ``ScheduleAdminConformance`` need pytest; they are imported on first access so
that the in-memory backend (what ``durable_backend="memory://"`` uses) works without pytest installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import Clock as Clock
from .clock import FakeClock as FakeClock
from .dead import dead_letter_tasks as dead_letter_tasks
from .dead import failed_outcome as failed_outcome
from .faults import DeliveryReport as DeliveryReport
from .faults import FaultFleet as FaultFleet
from .faults import FaultWorker as FaultWorker
from .faults import LogRecord as LogRecord
from .faults import check_at_least_once as check_at_least_once
from .faults import check_exactly_once as check_exactly_once
from .faults import wait_until as wait_until
from .forwarding import ForwardingBackend as ForwardingBackend
from .memory import DeadLetter as DeadLetter
from .memory import InMemoryDurableBackend as InMemoryDurableBackend
from .memory import MemoryTaskState as MemoryTaskState

if TYPE_CHECKING:
    from .admin_conformance import DurableAdminConformance as DurableAdminConformance
    from .browse_conformance import TaskBrowserConformance as TaskBrowserConformance
    from .conformance import DurableBackendConformance as DurableBackendConformance
    from .schedule_admin_conformance import ScheduleAdminConformance as ScheduleAdminConformance
    from .schedule_conformance import ScheduleBackendConformance as ScheduleBackendConformance

__all__ = (
    "Clock",
    "DeadLetter",
    "DeliveryReport",
    "DurableAdminConformance",
    "DurableBackendConformance",
    "FakeClock",
    "FaultFleet",
    "FaultWorker",
    "ForwardingBackend",
    "InMemoryDurableBackend",
    "LogRecord",
    "MemoryTaskState",
    "ScheduleAdminConformance",
    "ScheduleBackendConformance",
    "TaskBrowserConformance",
    "check_at_least_once",
    "check_exactly_once",
    "dead_letter_tasks",
    "failed_outcome",
    "wait_until",
)


def __getattr__(name: str) -> Any:
    if name == "DurableBackendConformance":
        from .conformance import DurableBackendConformance

        return DurableBackendConformance
    if name == "DurableAdminConformance":
        from .admin_conformance import DurableAdminConformance

        return DurableAdminConformance
    if name == "TaskBrowserConformance":
        from .browse_conformance import TaskBrowserConformance

        return TaskBrowserConformance
    if name == "ScheduleBackendConformance":
        from .schedule_conformance import ScheduleBackendConformance

        return ScheduleBackendConformance
    if name == "ScheduleAdminConformance":
        from .schedule_admin_conformance import ScheduleAdminConformance

        return ScheduleAdminConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
