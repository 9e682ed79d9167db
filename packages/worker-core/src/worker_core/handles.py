"""Task handles: one task's status and outcome, awaited by whoever holds the handle.

``await tm.submit(fn, ...)`` and ``tm.handle(task_id)`` return a :class:`TaskHandle`. Awaiting it returns what
the task's function returned, or raises the error the task ended with. A handle reads the task itself, so it
never misses an outcome, however fast the task ran: there is no subscription to open in time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, final

from . import task as records
from .errors import InvalidTaskError, ManagerStoppedError, TaskCancelledError, TaskNotFoundError
from .options import config_seconds
from .status import TERMINAL_STATUSES, TaskStatus

if TYPE_CHECKING:
    from .durable.outcomes import ResultStoreBackend, TaskOutcome
    from .results import ResultBus
    from .task import Task

__all__ = ("DurableTasks", "HandleSource", "HeldRef", "LocalTasks", "StoredRef", "StoredTasks", "TaskHandle")

T = TypeVar("T")


class HandleSource(Protocol):
    """Where handles read their tasks from: the manager that runs them (a result store, for durable tasks).

    One source serves many handles; each handle passes its own ``ref`` (the task itself for a local task,
    its id for a stored one), so a handle is one small object.
    """

    def task_id(self, ref: Any) -> uuid.UUID:
        """The task id."""
        ...

    def status(self, ref: Any) -> TaskStatus | None:
        """The last known status (``None``: not known yet)."""
        ...

    async def outcome(self, ref: Any, timeout_s: float | None) -> Any:
        """The result once the task is terminal, or its error raised."""
        ...

    def done_outcome(self, ref: Any) -> Any:
        """The result of the task, terminal now, or its error raised."""
        ...

    async def cancel(self, ref: Any) -> bool:
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

    __slots__ = ("_ref", "_source")

    def __init__(self, source: HandleSource, ref: Any) -> None:
        self._source = source
        self._ref = ref

    @property
    def id(self) -> uuid.UUID:
        """The task id."""
        return self._source.task_id(self._ref)

    @property
    def status(self) -> TaskStatus | None:
        """The task's status now."""
        return self._source.status(self._ref)

    def done(self) -> bool:
        """Whether the task reached a terminal status (its outcome is then known)."""
        return self._source.status(self._ref) in TERMINAL_STATUSES

    async def result(self, timeout: float | timedelta | None = None) -> T:  # noqa: ASYNC109 - a wait bound, as in Future.result
        """Wait for the task to finish (at most ``timeout`` seconds) and return its result or raise its error.

        ``timeout=0`` answers now, as ``concurrent.futures.Future.result(timeout=0)`` does: the result (or the
        error) of a finished task, else :class:`TimeoutError` (a durable task's stored outcome is read once).

        Raises:
            TimeoutError: ``timeout`` passed before the task finished (the task goes on; a
                :class:`~worker_core.TaskTimeoutError` is the task's own timeout instead).
            ConfigurationError: ``timeout`` is not seconds (>= 0) nor a ``timedelta``.
        """
        result: T = await self._source.outcome(self._ref, config_seconds(timeout, "timeout", allow_zero=True))
        return result

    def __await__(self) -> Generator[Any, None, T]:
        source = self._source
        ref = self._ref
        result: T
        if source.status(ref) in TERMINAL_STATUSES:  # no coroutine for a task that already finished
            result = source.done_outcome(ref)
        else:
            result = yield from source.outcome(ref, None).__await__()
        return result

    async def cancel(self) -> bool:
        """Cancel the task (as ``cancel_task``); False when it had already finished, True otherwise."""
        return await self._source.cancel(self._ref)

    def __repr__(self) -> str:
        status = self.status
        return f"TaskHandle(id={self.id}, status={status.value if status is not None else None})"


@final
class LocalTasks:
    """The source of handles on one manager's tasks: the task itself, woken by the manager's result bus."""

    __slots__ = ("_bind", "_bus", "_cancel")

    def __init__(
        self, bus: ResultBus, cancel: Callable[[uuid.UUID], Awaitable[None]], bind: Callable[[], object]
    ) -> None:
        self._bus = bus
        self._cancel = cancel
        self._bind = bind  # raises WrongLoopError on another loop than the manager's

    def handle(self, task: Task[T]) -> TaskHandle[T]:
        """A handle on ``task``, one of this manager's."""
        return TaskHandle(self, task)

    def task_id(self, ref: Task[Any]) -> uuid.UUID:
        """The task id."""
        return ref.id

    def status(self, ref: Task[Any]) -> TaskStatus | None:
        """The task's status now."""
        return records.status(ref)

    async def outcome(self, ref: Task[Any], timeout_s: float | None) -> Any:
        """The result once the task is terminal, or its error raised."""
        if records.status(ref) not in TERMINAL_STATUSES:
            self._bind()
            if not await self._bus.finished(ref, timeout_s):
                raise ManagerStoppedError(f"the task manager stopped before task {ref.id} finished")
        return outcome_of(ref)

    def done_outcome(self, ref: Task[Any]) -> Any:
        """The result of the task, terminal now, or its error raised."""
        return outcome_of(ref)

    async def cancel(self, ref: Task[Any]) -> bool:
        """``cancel_task``; False when the task had already finished."""
        if records.status(ref) in TERMINAL_STATUSES:
            return False
        await self._cancel(ref.id)
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


@final
class StoredRef:
    """One handle's view of a durable task in a result store: its id and the outcome, once read."""

    __slots__ = ("id", "outcome")

    def __init__(self, task_id: uuid.UUID) -> None:
        self.id = task_id
        self.outcome: TaskOutcome | None = None


@final
class StoredTasks:
    """The source of handles on durable tasks that this node does not hold: the backend's result store.

    ``status`` is ``None`` until the outcome has been read (awaiting the handle reads it, woken by the store
    when the task finishes anywhere).
    """

    __slots__ = ("_store",)

    def __init__(self, store: ResultStoreBackend) -> None:
        self._store = store

    def handle(self, task_id: uuid.UUID) -> TaskHandle[Any]:
        """A handle on the durable task ``task_id``."""
        return TaskHandle(self, StoredRef(task_id))

    def task_id(self, ref: StoredRef) -> uuid.UUID:
        """The task id."""
        return ref.id

    def status(self, ref: StoredRef) -> TaskStatus | None:
        """The status of the outcome read so far (``None``: none read yet)."""
        return None if ref.outcome is None else ref.outcome.status

    async def outcome(self, ref: StoredRef, timeout_s: float | None) -> Any:
        """The task's result once its outcome is stored, or its error raised."""
        outcome = ref.outcome
        if outcome is None:
            if timeout_s == 0:  # answer now: one read, no wait
                outcome = await self._store.get_outcome(ref.id)
            else:
                outcome = await self._store.wait_outcome(ref.id, timeout_s)
            if outcome is None:
                raise TimeoutError(f"no outcome of durable task {ref.id} within {timeout_s}s")
            ref.outcome = outcome
        return outcome.value()

    def done_outcome(self, ref: StoredRef) -> Any:
        """The result of the outcome already read, or its error raised."""
        assert ref.outcome is not None
        return ref.outcome.value()

    async def cancel(self, ref: StoredRef) -> bool:
        """False when it has finished; a task another node holds cannot be cancelled from here."""
        if ref.outcome is None:
            ref.outcome = await self._store.get_outcome(ref.id)
        if ref.outcome is not None:
            return False
        raise TaskNotFoundError(f"durable task {ref.id} is not held by this node: it cannot be cancelled from here")


@final
class HeldRef:
    """One handle's view of a durable task this node holds: the task run here and its stored outcome."""

    __slots__ = ("stored", "task")

    def __init__(self, task: Task[Any]) -> None:
        self.task = task
        self.stored = StoredRef(task.id)


@final
class DurableTasks:
    """The source of handles on durable tasks this node holds, when the backend stores results.

    The result store is the authority on a durable task's outcome: the task this node ran may be run again
    (a DLQ replay, an admin retry) after it finished here, so its local record says how the *last run here*
    ended, not how the task ended. ``status`` is the local task's while it runs here, then the stored
    outcome's once read (``None`` in between); awaiting waits on the store, so a handle on a finished but
    replayed task waits for the new run; a failed task raises ``RemoteTaskError`` wherever it ran. A task that
    finished here longer ago than the store keeps outcomes (``ttl_s``) is answered from the local task again.
    """

    __slots__ = ("_local", "_stored", "_ttl_s")

    def __init__(self, local: LocalTasks, stored: StoredTasks, ttl_s: float) -> None:
        self._local = local
        self._stored = stored
        self._ttl_s = ttl_s  # how long the store keeps an outcome: past that, the run seen here is all there is

    def _expired(self, ref: HeldRef) -> bool:
        """The task finished here longer ago than the store keeps outcomes, and no outcome was read."""
        if ref.stored.outcome is not None or records.status(ref.task) not in TERMINAL_STATUSES:
            return False
        return time.monotonic() - records.completed_mono(ref.task) > self._ttl_s

    def handle(self, task: Task[Any]) -> TaskHandle[Any]:
        """A handle on the durable ``task`` this node holds."""
        return TaskHandle(self, HeldRef(task))

    def task_id(self, ref: HeldRef) -> uuid.UUID:
        """The task id."""
        return ref.stored.id

    def status(self, ref: HeldRef) -> TaskStatus | None:
        """The stored outcome's status once read, else the local task's while it is not finished here."""
        stored = self._stored.status(ref.stored)
        if stored is not None:
            return stored
        local = records.status(ref.task)
        return None if local in TERMINAL_STATUSES and not self._expired(ref) else local

    async def outcome(self, ref: HeldRef, timeout_s: float | None) -> Any:
        """The task's result once its outcome is stored, or its error raised."""
        if self._expired(ref):
            return outcome_of(ref.task)
        return await self._stored.outcome(ref.stored, timeout_s)

    def done_outcome(self, ref: HeldRef) -> Any:
        """The result of the outcome already read, or its error raised."""
        if ref.stored.outcome is None:
            return outcome_of(ref.task)  # done() said so from the local task: its stored outcome expired
        return self._stored.done_outcome(ref.stored)

    async def cancel(self, ref: HeldRef) -> bool:
        """``cancel_task`` while the task runs here; else as a stored task."""
        if records.status(ref.task) not in TERMINAL_STATUSES:
            return await self._local.cancel(ref.task)
        return await self._stored.cancel(ref.stored)
