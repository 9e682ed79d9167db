"""The engine's side of the schedules: how a tick's task reaches the intake or the durable registrar."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from worker_core.durable.registration import DurableRegistrar
    from worker_core.durable.types import DurableTask
    from worker_core.schedules.types import TickResult
    from worker_core.task import Task

    from .intake import Intake

__all__ = ("SchedulePort",)


@final
class SchedulePort:
    """Implements the schedule runner's ``Firing`` port over one manager's intake and registrar."""

    __slots__ = ("_default_queue", "_intake", "_registrar")

    def __init__(self, intake: Intake, registrar: DurableRegistrar | None, default_queue: Callable[[], str]) -> None:
        self._intake = intake
        self._registrar = registrar
        self._default_queue = default_queue

    def accepting(self) -> bool:
        return self._intake.open

    async def register_local(self, task: Task[Any]) -> uuid.UUID:
        pending = self._intake.register(task)
        if pending is not None:
            await pending
        return task.id

    async def register_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str = ""
    ) -> TickResult:
        assert self._registrar is not None
        return await self._registrar.register_tick(task, schedule, tick_ms, ttl, node)

    async def register_durable(self, task: DurableTask) -> uuid.UUID:
        assert self._registrar is not None
        return await self._registrar.register(task)

    def default_queue(self) -> str:
        return self._default_queue()
