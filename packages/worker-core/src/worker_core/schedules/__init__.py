"""Cron and interval schedules: tasks created on a schedule, in process or durable (once per tick on any nodes).

See ``TaskManager.register_cron_task`` / ``register_durable_cron_task`` and worker-core's README, "Schedules".
"""

from __future__ import annotations

from .memory import MemoryScheduleState
from .spec import MIN_INTERVAL, Spec, parse_spec, resolve_tz
from .types import (
    META_SCHEDULE_DURABLE,
    META_SCHEDULE_MANUAL,
    META_SCHEDULE_NAME,
    META_SCHEDULE_QUEUE,
    META_SCHEDULE_SPEC,
    META_SCHEDULE_TICK,
    PUBLISHED_TTL_S,
    REPUBLISH_S,
    MissedPolicy,
    ScheduleBackend,
    ScheduleEvent,
    ScheduleInfo,
    ScheduleRecord,
    ScheduleState,
    TickResult,
    tick_task_id,
)

__all__ = (
    "META_SCHEDULE_DURABLE",
    "META_SCHEDULE_MANUAL",
    "META_SCHEDULE_NAME",
    "META_SCHEDULE_QUEUE",
    "META_SCHEDULE_SPEC",
    "META_SCHEDULE_TICK",
    "MIN_INTERVAL",
    "PUBLISHED_TTL_S",
    "REPUBLISH_S",
    "MemoryScheduleState",
    "MissedPolicy",
    "ScheduleBackend",
    "ScheduleEvent",
    "ScheduleInfo",
    "ScheduleRecord",
    "ScheduleState",
    "Spec",
    "TickResult",
    "parse_spec",
    "resolve_tz",
    "tick_task_id",
)
