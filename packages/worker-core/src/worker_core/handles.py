"""Task handles: one task's status and outcome, awaited by whoever holds the handle.

``await tm.submit(fn, ...)`` and ``tm.handle(task_id)`` return a :class:`TaskHandle`. Awaiting it returns what
the task's function returned, or raises the error the task ended with. A handle reads the task itself, so it
never misses an outcome, however fast the task ran: there is no subscription to open in time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

from . import task as records
from .errors import InvalidTaskError, ManagerStoppedError, TaskCancelledError
from .options import config_seconds
from .status import TERMINAL_STATUSES, TaskStatus

if TYPE_CHECKING:
    from .results import ResultBus
    from .task import Task

__all__ = ("HandleSource", "LocalSource", "TaskHandle")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class HandleSource(Protocol[T_co]):
    """Where a handle reads its task from (the manager that runs it; a result store, for durable tasks)."""

    @property
    def id(self) -> uuid.UUID:
        """The task id."""
        ...

    @property
    def status(self) -> TaskStatus | None:
        """The last known status (``None``: not known yet)."""
        ...

    async def outcome(self, timeout_s: float | None) -> T_co:
        """The result once the task is terminal, or its error raised."""
        ...

    async def cancel(self) -> bool:
        """Ask for the task to be cancelled; False when it had already finished."""
        ...


@final
class TaskHandle(Generic[T]):
    """One task's status and outcome: ``await handle`` returns its result or raises its error.

    ``T`` is what the task's function returns (awaited, for an ``async def``). Get one from
    ``TaskManager.submit`` or ``TaskManager.handle``; handles are cheap and any number may watch one task.

    Awaiting raises the task's own exception when it ``FAILED``, :class:`~worker_core.TaskCancelledError`
    when it was cancelled, :class:`~worker_core.TaskTimeoutError` when its attempt ran past its timeout, and
    :class:`~worker_core.ManagerStoppedError` when the manager stopped before the task finished.
    """

    __slots__ = ("_source",)

    def __init__(self, source: HandleSource[T]) -> None:
        self._source = source

    @property
    def id(self) -> uuid.UUID:
        """The task id."""
        return self._source.id

    @property
    def status(self) -> TaskStatus | None:
        """The task's status now."""
        return self._source.status

    def done(self) -> bool:
        """Whether the task reached a terminal status (its outcome is then known)."""
        return self._source.status in TERMINAL_STATUSES

    async def result(self, timeout: float | timedelta | None = None) -> T:  # noqa: ASYNC109 - a wait bound, as in Future.result
        """Wait for the task to finish (at most ``timeout`` seconds) and return its result or raise its error.

        Raises:
            TimeoutError: ``timeout`` passed before the task finished (the task goes on; a
                :class:`~worker_core.TaskTimeoutError` is the task's own timeout instead).
            ConfigurationError: ``timeout`` is not seconds (> 0) nor a ``timedelta``.
        """
        return await self._source.outcome(config_seconds(timeout, "timeout"))

    def __await__(self) -> Generator[Any, None, T]:
        return self._source.outcome(None).__await__()

    async def cancel(self) -> bool:
        """Cancel the task (as ``cancel_task``); False when it had already finished, True otherwise."""
        return await self._source.cancel()

    def __repr__(self) -> str:
        status = self.status
        return f"TaskHandle(id={self.id}, status={status.value if status is not None else None})"


@final
class LocalSource(Generic[T]):
    """A task of this process's manager: read from the task itself, woken by the manager's result bus."""

    __slots__ = ("_bind", "_bus", "_cancel", "_task")

    def __init__(
        self,
        task: Task[T],
        bus: ResultBus,
        cancel: Callable[[uuid.UUID], Awaitable[None]],
        bind: Callable[[], object],
    ) -> None:
        self._task = task
        self._bus = bus
        self._cancel = cancel
        self._bind = bind  # raises WrongLoopError on another loop than the manager's

    @property
    def id(self) -> uuid.UUID:
        """The task id."""
        return self._task.id

    @property
    def status(self) -> TaskStatus | None:
        """The task's status now."""
        return records.status(self._task)

    async def outcome(self, timeout_s: float | None) -> T:
        """The result once the task is terminal, or its error raised."""
        task = self._task
        if records.status(task) not in TERMINAL_STATUSES:
            self._bind()
            if not await self._bus.finished(task, timeout_s):
                raise ManagerStoppedError(f"the task manager stopped before task {task.id} finished")
        return outcome_of(task)

    async def cancel(self) -> bool:
        """``cancel_task``; False when the task had already finished."""
        if records.status(self._task) in TERMINAL_STATUSES:
            return False
        await self._cancel(self._task.id)
        return True


def outcome_of(task: Task[T]) -> T:
    """The result of the terminal ``task``, or the error it ended with raised."""
    status = records.status(task)
    if status is TaskStatus.COMPLETED:
        result: T = task.result  # type: ignore[assignment]  # COMPLETED: the function's return value
        return result
    error = task.error
    if error is not None:
        raise error
    if status is TaskStatus.INVALID:
        raise InvalidTaskError(f"task {task.id} was rejected at registration")
    raise TaskCancelledError(f"task {task.id} ended {status}")
