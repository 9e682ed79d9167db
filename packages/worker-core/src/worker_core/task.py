"""The task a user registers and its life (the context one attempt receives is re-exported here).

:class:`Task` is a record: users read it, and only this module changes what it holds. The runtime moves a
task through its life by calling the transition functions at the end of this module (``bind``, ``begin``,
``retry_wait``, ``finish``, ...), never by assigning to its fields, so every state change of a task can be
read in one place. :class:`TaskContext`, what one attempt receives, belongs to the attempt runner
(``worker_core._runtime.attempt``), which alone changes it; it is public from here.
"""

from __future__ import annotations

import inspect
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, Generic, TypedDict, TypeVar, Unpack, overload

from ._calls import GENERATOR_FLAGS, NO_KWARGS, Call, generator_refusal, is_coroutine_callable
from .errors import InvalidTaskError
from .options import is_plain_int, to_seconds
from .status import TaskStatus

__all__ = ("CancelEvent", "Task", "TaskContext", "TaskFields", "TaskFunction", "to_seconds")

#: What ``Task.execute`` may be: ``async def f(ctx)`` or a plain ``def f(ctx)`` (run in a thread).
TaskFunction = Callable[["TaskContext"], Any] | Callable[["TaskContext"], Awaitable[Any]]

T = TypeVar("T")


class TaskFields(TypedDict, total=False):
    """The keyword arguments of :class:`Task` (and of ``TaskManager.with_options``), for typing ``**kwargs``."""

    id: uuid.UUID | None
    name: str
    description: str
    priority: int
    queue: str
    weight: int
    run_at: datetime | None
    retries: int | None
    retry_delay: float | timedelta | None
    timeout: float | timedelta | None
    metadata: dict[str, str] | None


_QUEUED: Final = TaskStatus.QUEUED
_RUNNING: Final = TaskStatus.RUNNING
_RETRYING: Final = TaskStatus.RETRYING

_CO_COROUTINE: Final = inspect.CO_COROUTINE


# Timestamps are kept on the monotonic clock (cheap, and what latencies need) and shown as UTC datetimes.
_EPOCH_OFFSET = time.time() - time.monotonic()
_new_object = object.__new__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
# UUID's slots, set through their descriptors (UUID.__setattr__ refuses, and object.__setattr__ is slower).
_set_uuid_int = uuid.UUID.__dict__["int"].__set__
_set_uuid_is_safe = uuid.UUID.__dict__["is_safe"].__set__

# Task ids are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 bits of a counter that starts at a
# random point (from os.urandom) in each new millisecond and counts up within it, around the version and
# variant bits. Ids made by one process therefore increase strictly, so tasks of equal priority and weight
# start in registration order (go-worker's UUIDv4 ids order them at random), and the ready queues see keys
# in ascending order (a FIFO per band instead of a heap). Across processes ids stay unique through the
# random start points.
_RAND_B_BITS = 62
_UUID7_BITS = (0x7 << 76) | (0x2 << _RAND_B_BITS)  # version 7, RFC 4122 variant
_last_key = 0  # the last id handed out, as an int
_ms_end_ns = 0  # when the millisecond of the last id ends (time.time_ns)
_time_ns = time.time_ns


def _reseed() -> None:
    """Forget the last id (a forked child starts a fresh random counter instead of repeating its parent's)."""
    global _last_key, _ms_end_ns
    _last_key = _ms_end_ns = 0


os.register_at_fork(after_in_child=_reseed)


def _new_task_key() -> int:
    """A new UUIDv7 as its 128-bit int, greater than every id this process made before.

    Within a millisecond the id counts up by one from a random start; the start leaves rand_b's top bit
    clear, so 2**61 ids fit before a carry could reach the variant bits.
    """
    global _last_key, _ms_end_ns
    now = _time_ns()
    if now < _ms_end_ns:
        _last_key += 1
        return _last_key
    ms = now // 1_000_000
    _ms_end_ns = (ms + 1) * 1_000_000
    rand = int.from_bytes(os.urandom(10))  # 80 random bits: 12 for rand_a, 61 for rand_b
    key = (ms << 80) | ((rand >> 68) << 64) | (rand & ((1 << 61) - 1)) | _UUID7_BITS
    if key <= _last_key:  # the clock went back, or a millisecond's counter ran past the next start
        key = _last_key + 1
    _last_key = key
    return key


class Task(Generic[T]):
    """A unit of work: ``execute(ctx)`` plus how and when to run it.

    Args:
        execute: ``async def f(ctx)`` or a plain ``def f(ctx)`` (run in the manager's thread pool; when it
            returns an awaitable, that is awaited); its return value is the result, an exception the failure.
        id: The task id; a new UUIDv7 when omitted (ids made by one process increase, so tasks
            of equal priority and weight start in registration order).
        name: A label for logs and results.
        description: Free text.
        priority: Lower values run first.
        queue: The queue name; ``""`` means the manager's default queue.
        weight: Tie-break inside a priority, higher first (``<= 0`` means 1).
        run_at: Earliest start (a naive datetime is local time); ``None`` or a past time means now.
        retries: Retries after the first attempt; ``None`` means the manager's ``max_retries``, which is
            also the most a task may ask for (more is an :class:`~worker_core.errors.InvalidTaskError`
            at registration).
        retry_delay: Base backoff in seconds (doubling per retry, capped at 60 s, jittered);
            ``None`` means the manager's.
        timeout: Seconds per attempt; ``None`` means the manager's.
        metadata: String pairs carried with the task (trace context, gRPC metadata).

    Raises:
        InvalidTaskError: ``execute`` is not callable or a field has the wrong type or range.

    After registration the task exposes ``status``, ``result``, ``error``, ``started_at``,
    ``completed_at`` and ``attempts``; the manager changes them, nothing else does.

    A task made by ``submit(fn, *args, **kwargs)`` keeps its arguments itself: its ``execute`` is ``fn`` when
    ``fn`` is an ``async def`` (each attempt awaits ``fn(*args, **kwargs)``), and a ``Call`` wrapping ``fn``
    and its arguments when it is a plain function.
    """

    __slots__ = (
        "_args",
        "_attempt",
        "_backoff",
        "_completed_mono",
        "_ctx",
        "_error",
        "_is_async",
        "_key",
        "_kwargs",
        "_result",
        "_retries_left",
        "_started_mono",
        "_status",
        "description",
        "execute",
        "metadata",
        "name",
        "priority",
        "queue",
        "retries",
        "retry_delay",
        "run_at",
        "timeout",
        "weight",
    )

    #: Whether this is a durable task leased from a backend (its ``name`` is then the handler name).
    durable: bool = False

    if TYPE_CHECKING:  # ``Task[T]``: T is what ``execute`` returns (awaited, for an ``async def``)

        @overload
        def __init__(self, execute: Callable[[TaskContext], Awaitable[T]], **fields: Unpack[TaskFields]) -> None: ...

        @overload
        def __init__(self, execute: Callable[[TaskContext], T], **fields: Unpack[TaskFields]) -> None: ...

    def __init__(  # the overloads above are what callers see
        self,
        execute: TaskFunction,
        *,
        id: uuid.UUID | None = None,
        name: str = "",
        description: str = "",
        priority: int = 0,
        queue: str = "",
        weight: int = 1,
        run_at: datetime | None = None,
        retries: int | None = None,
        retry_delay: float | timedelta | None = None,
        timeout: float | timedelta | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if not callable(execute):
            raise InvalidTaskError(f"execute must be callable, got {type(execute).__name__}")
        if id is None:
            # _new_task_key() inlined for the usual case: the next id of the current millisecond.
            global _last_key
            if _time_ns() < _ms_end_ns:
                _last_key += 1
                self._key = _last_key
            else:
                self._key = _new_task_key()
        elif isinstance(id, uuid.UUID):
            self._key = id.int
        else:
            raise InvalidTaskError(f"id must be a uuid.UUID, got {type(id).__name__}")
        if (  # exact-type checks, inline: this is on the hot path
            type(name) is not str
            or type(description) is not str
            or type(queue) is not str
            or type(priority) is not int
            or type(weight) is not int
        ):
            _raise_field_error(name, description, queue, priority, weight)
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidTaskError(f"run_at must be a datetime, got {type(run_at).__name__}")
        if retries is not None and (not is_plain_int(retries) or retries < 0):
            raise InvalidTaskError(f"retries must be an int >= 0 or None, got {retries!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidTaskError("metadata must be a dict of str to str")
        if retry_delay is None and timeout is None:
            self.retry_delay = self.timeout = None
        else:
            try:
                self.retry_delay = to_seconds(retry_delay, "retry_delay")
                self.timeout = to_seconds(timeout, "timeout")
            except (TypeError, ValueError) as exc:
                raise InvalidTaskError(str(exc)) from None
        self.execute = execute
        self.name = name
        self.description = description
        self.priority = priority
        self.queue = queue
        self.weight = weight
        self.run_at = run_at
        self.retries = retries
        self.metadata = metadata
        fn: object = execute
        if type(fn) is FunctionType:
            flags = fn.__code__.co_flags
            if flags & GENERATOR_FLAGS:
                raise InvalidTaskError(generator_refusal(fn, "execute"))
            self._is_async = bool(flags & _CO_COROUTINE)
        elif type(fn) is Call:  # made by submit, after its function was checked
            self._is_async = False
        else:
            refusal = generator_refusal(fn, "execute")
            if refusal is not None:
                raise InvalidTaskError(refusal)
            self._is_async = is_coroutine_callable(fn)
        self._args: tuple[Any, ...] | None = None  # a submitted async call's arguments (see call_with)
        self._kwargs: dict[str, Any] = NO_KWARGS
        self._status: TaskStatus | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._started_mono = 0.0
        self._completed_mono = 0.0
        self._ctx: TaskContext | None = None
        self._attempt = 0
        self._retries_left = 0
        self._backoff = 0.0

    @property
    def id(self) -> uuid.UUID:
        """The task id (a UUIDv7 unless one was given)."""
        # Kept as an int and turned into a UUID on access: one object less per task for the GC to walk.
        new_id: uuid.UUID = _new_object(uuid.UUID)
        _set_uuid_int(new_id, self._key)
        _set_uuid_is_safe(new_id, _SAFE_UNKNOWN)
        return new_id

    @id.setter
    def id(self, value: uuid.UUID) -> None:
        if self._status is not None:
            raise InvalidTaskError("the id of a registered task cannot change")
        if not isinstance(value, uuid.UUID):
            raise InvalidTaskError(f"id must be a uuid.UUID, got {type(value).__name__}")
        self._key = value.int

    @property
    def status(self) -> TaskStatus | None:
        """The current status; ``None`` until the task is registered."""
        return self._status

    @property
    def result(self) -> T | None:
        """The value ``execute`` returned (``None`` until the task completes)."""
        result: T | None = self._result
        return result

    @property
    def error(self) -> BaseException | None:
        """The exception the task ended with, or ``None``."""
        return self._error

    @property
    def started_at(self) -> datetime | None:
        """When the latest attempt started (UTC), or ``None``."""
        return datetime.fromtimestamp(self._started_mono + _EPOCH_OFFSET, UTC) if self._started_mono else None

    @property
    def completed_at(self) -> datetime | None:
        """When the task reached its terminal status (UTC), or ``None``."""
        mono = self._completed_mono
        return datetime.fromtimestamp(mono + _EPOCH_OFFSET, UTC) if mono else None

    @property
    def attempts(self) -> int:
        """How many attempts have started."""
        return self._attempt

    def __repr__(self) -> str:
        status = self._status.value if self._status is not None else "unregistered"
        return f"Task(id={self.id}, name={self.name!r}, priority={self.priority}, status={status})"


def _raise_field_error(name: object, description: object, queue: object, priority: object, weight: object) -> None:
    if not all(isinstance(value, str) for value in (name, description, queue)):
        raise InvalidTaskError("name, description and queue must be str")
    if not is_plain_int(priority) or not is_plain_int(weight):
        raise InvalidTaskError("priority and weight must be int")


# ------------------------------------------------------------------------------------------------------------
# Transitions. The runtime (worker_core._runtime, worker_core.durable) changes a task only through these.


def key(task: Task[Any]) -> int:
    """The task's id as a 128-bit int (what the registry and the ready queues key by)."""
    return task._key


def is_async(task: Task[Any]) -> bool:
    """Whether ``task.execute`` is a coroutine function (else it runs in a thread)."""
    return task._is_async


def call_with(task: Task[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``task.execute`` is a submitted ``async def``: each attempt awaits ``execute(*args, **kwargs)``.

    Kept on the task itself, not in a callable wrapping ``execute``: one object less per task. Set by
    ``submit`` before registration, never after.
    """
    task._args = args
    task._kwargs = kwargs or NO_KWARGS


def run_async(task: Task[Any], ctx: TaskContext) -> Awaitable[Any]:
    """What an attempt of an async task awaits: ``execute(ctx)``, or a submitted call's ``execute(*args, **kwargs)``."""
    args = task._args
    if args is None:
        return task.execute(ctx)
    return task.execute(*args, **task._kwargs)


def bind(task: Task[Any], retries: int, backoff_s: float) -> None:
    """The task is registered: ``QUEUED``, with its retry budget and first backoff."""
    task._retries_left = retries
    task._backoff = backoff_s
    task._status = _QUEUED


def status(task: Task[Any]) -> TaskStatus | None:
    """The task's status (``None``: not registered)."""
    return task._status


def mark_invalid(task: Task[Any]) -> None:
    """The task was rejected at registration."""
    task._status = TaskStatus.INVALID


def count_from(task: Task[Any], attempts: int) -> None:
    """Attempts already made elsewhere (a durable task's earlier deliveries): the next attempt is ``attempts + 1``."""
    task._attempt = attempts


def begin(task: Task[Any], now: float, ctx: TaskContext) -> None:
    """Attempt ``ctx`` (number ``task.attempts + 1``) starts at ``now``: the task is ``RUNNING``."""
    task._attempt += 1
    task._started_mono = now
    task._status = _RUNNING
    task._ctx = ctx


def set_current(task: Task[Any], ctx: TaskContext | None) -> None:
    """``ctx`` is the attempt running now (``None``: none is)."""
    task._ctx = ctx


def current(task: Task[Any]) -> TaskContext | None:
    """The context of the attempt running now, if one is."""
    return task._ctx


def retry_wait(task: Task[Any], error: BaseException | None) -> tuple[int, float]:
    """The task waits in backoff (``RETRYING``), one retry used; returns (the failed attempt, its backoff base).

    The base doubles for the next retry, capped at :data:`worker_core.backoff.MAX_BACKOFF`.
    """
    from .backoff import next_backoff

    task._retries_left -= 1
    base = task._backoff
    task._backoff = next_backoff(base)
    task._status = _RETRYING
    task._error = error
    return max(1, task._attempt), base


def retries_left(task: Task[Any]) -> int:
    """Retries the task may still use."""
    return task._retries_left


def backoff(task: Task[Any]) -> float:
    """The backoff base of the task's next retry, in seconds."""
    return task._backoff


def requeue(task: Task[Any]) -> None:
    """Backoff is over (or ``execute_task`` takes it): the task waits for a worker again."""
    task._status = _QUEUED


def finish(task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None, now: float) -> float | None:
    """Make the task terminal with this outcome; the seconds its last attempt ran (``-1.0``: it never started).

    ``None`` (and nothing changed) when the task already was terminal.
    """
    current_status = task._status
    # Identity tests, not a set lookup: Enum.__hash__ is Python code and this is the hot path.
    if current_status is not _RUNNING and current_status is not _QUEUED and current_status is not _RETRYING:
        return None
    task._status = status
    task._result = result
    task._error = error
    task._completed_mono = now
    started = task._started_mono
    return now - started if started else -1.0


def completed_mono(task: Task[Any]) -> float:
    """When the task became terminal, on the monotonic clock (0.0 while it is not)."""
    return task._completed_mono


# The attempt's context is the attempt runner's record (it alone changes it); it is public from here too.
from ._runtime.attempt import CancelEvent, TaskContext  # noqa: E402
