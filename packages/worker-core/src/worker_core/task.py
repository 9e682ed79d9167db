"""The task a user registers, the context one attempt receives, and the result a task ends with."""

from __future__ import annotations

import inspect
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, final

from mypy_extensions import mypyc_attr

from .errors import InvalidTaskError
from .status import TaskStatus

if TYPE_CHECKING:
    import asyncio

    from .durable.types import DurableTaskLease

__all__ = ("Result", "Task", "TaskContext", "TaskFunction", "to_seconds")

#: What ``Task.execute`` may be: ``async def f(ctx)`` or a plain ``def f(ctx)`` (run in a thread).
TaskFunction = Callable[["TaskContext"], Any] | Callable[["TaskContext"], Awaitable[Any]]


def to_seconds(value: object, name: str, *, allow_zero: bool = False) -> float | None:
    """Normalise a duration given as float seconds or a ``timedelta``; ``None`` stays ``None``.

    Raises:
        TypeError: ``value`` is neither a number nor a ``timedelta``.
        ValueError: ``value`` is negative (or zero when ``allow_zero`` is false).
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (float) or a timedelta, not {type(value).__name__}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value!r}")
    return seconds


_async_cache: dict[object, bool] = {}
_FunctionType: type = type(to_seconds)


def _is_async_callable(fn: object) -> bool:
    """Whether ``fn(ctx)`` returns a coroutine; cached per function (tasks usually share a few)."""
    try:
        return _async_cache[fn]
    except (KeyError, TypeError):
        pass
    result = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
    try:
        if len(_async_cache) >= 512:
            _async_cache.clear()
        _async_cache[fn] = result
    except TypeError:  # unhashable callable
        pass
    return result


@final
class TaskContext:
    """What one attempt of a task receives: its id, the attempt number, its deadline and a cancel event.

    ``deadline`` is on the :func:`time.monotonic` clock (``None`` when the attempt has no timeout);
    :meth:`remaining` gives the seconds left. ``cancelled`` is a :class:`threading.Event` set when the
    attempt is cancelled or its deadline passes: a plain (threaded) function polls it to stop early.
    """

    __slots__ = ("_active", "_cancelled", "_runner", "attempt", "deadline", "task")

    def __init__(self, task: Task, attempt: int, deadline: float | None, cancelled: threading.Event | None = None):
        self.task = task
        self.attempt = attempt
        self.deadline = deadline
        self._cancelled = cancelled
        self._active = True
        self._runner: asyncio.Task[Any] | None = None  # the asyncio task awaiting an async attempt

    @property
    def cancelled(self) -> threading.Event:
        """Set when this attempt is cancelled or times out (created on first use for ``async`` tasks)."""
        event = self._cancelled
        if event is None:
            event = self._cancelled = threading.Event()
        return event

    @property
    def task_id(self) -> uuid.UUID:
        """The id of the task this attempt belongs to."""
        return self.task.id

    @property
    def metadata(self) -> dict[str, str]:
        """The task's metadata (trace context, gRPC metadata); empty when it has none."""
        metadata = self.task.metadata
        if metadata is None:
            metadata = self.task.metadata = {}
        return metadata

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def _cancel(self) -> None:
        self.cancelled.set()

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id}, attempt={self.attempt})"


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
# start in registration order (go-worker's UUIDv4 ids order them at random), and the ready heaps and the
# registry see keys in ascending order, which keeps their memory accesses local (much faster than random
# keys once a queue holds many tasks). Across processes ids stay unique through the random start points.
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
    return _next_millisecond(now)


def _next_millisecond(now: int) -> int:
    global _last_key, _ms_end_ns
    ms = now // 1_000_000
    _ms_end_ns = (ms + 1) * 1_000_000
    rand = int.from_bytes(os.urandom(10))  # 80 random bits: 12 for rand_a, 61 for rand_b
    key = (ms << 80) | ((rand >> 68) << 64) | (rand & ((1 << 61) - 1)) | _UUID7_BITS
    if key <= _last_key:  # the clock went back, or a millisecond's counter ran past the next start
        key = _last_key + 1
    _last_key = key
    return key


def _uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks (the value is known to be valid)."""
    new_id: uuid.UUID = _new_object(uuid.UUID)
    _set_uuid_int(new_id, value)
    _set_uuid_is_safe(new_id, _SAFE_UNKNOWN)
    return new_id


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
class Task:
    """A unit of work: ``execute(ctx)`` plus how and when to run it.

    Args:
        execute: ``async def f(ctx)`` or a plain ``def f(ctx)`` (run in the manager's thread pool);
            its return value is the result, an exception the failure.
        id: The task id; a new UUIDv7 when omitted (ids made by one process increase, so tasks
            of equal priority and weight start in registration order).
        name: A label for logs and results.
        description: Free text.
        priority: Lower values run first.
        queue: The queue name; ``""`` means the manager's default queue.
        weight: Tie-break inside a priority, higher first (``<= 0`` means 1).
        run_at: Earliest start (naive means UTC); ``None`` or a past time means now.
        retries: Retries after the first attempt; ``None`` means the manager's ``max_retries``, an
            explicit value is capped by it.
        retry_delay: Base backoff in seconds (doubling per retry, capped at 60 s, jittered);
            ``None`` means the manager's.
        timeout: Seconds per attempt; ``None`` means the manager's.
        metadata: String pairs carried with the task (trace context, gRPC metadata).

    Raises:
        InvalidTaskError: ``execute`` is not callable or a field has the wrong type or range.

    After registration the task exposes ``status``, ``result``, ``error``, ``started_at`` and
    ``completed_at``; they are updated by the manager only.
    """

    __slots__ = (
        "_attempt",
        "_backoff",
        "_cancel_reason",
        "_completed_mono",
        "_ctx",
        "_entry",
        "_error",
        "_is_async",
        "_key",
        "_lease",
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

    _retries_left: int
    _backoff: float

    def __init__(
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
        if retries is not None and (not _is_int(retries) or retries < 0):
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
        is_async = _async_cache.get(fn) if type(fn) is _FunctionType else None
        self._is_async = _is_async_callable(execute) if is_async is None else is_async
        self._status: TaskStatus | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._started_mono = 0.0
        self._completed_mono = 0.0
        self._lease: DurableTaskLease | None = None
        self._entry: object = None
        self._ctx: TaskContext | None = None
        self._cancel_reason: TaskStatus | None = None
        self._attempt = 0
        # _retries_left and _backoff are set when the task is registered (Engine._prepare).

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
    def result(self) -> Any:
        """The value ``execute`` returned (``None`` until the task completes)."""
        return self._result

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
    def durable(self) -> bool:
        """Whether this is a durable task leased from a backend (its ``name`` is then the handler name).

        ``False`` for an in-memory task registered with ``register_task``.
        """
        return self._lease is not None

    @property
    def attempts(self) -> int:
        """How many attempts have started."""
        return self._attempt

    def __repr__(self) -> str:
        status = self._status.value if self._status is not None else "unregistered"
        return f"Task(id={self.id}, name={self.name!r}, priority={self.priority}, status={status})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _raise_field_error(name: object, description: object, queue: object, priority: object, weight: object) -> None:
    if not all(isinstance(value, str) for value in (name, description, queue)):
        raise InvalidTaskError("name, description and queue must be str")
    if not _is_int(priority) or not _is_int(weight):
        raise InvalidTaskError("priority and weight must be int")


@final
class Result:
    """The outcome of one task, published once when it reaches a terminal status.

    Attributes:
        task: The task.
        status: Its terminal status.
        result: What ``execute`` returned (``None`` unless ``COMPLETED``).
        error: The exception it ended with, or ``None``.
    """

    __slots__ = ("error", "result", "status", "task")

    def __init__(self, task: Task, status: TaskStatus, result: Any = None, error: BaseException | None = None):
        self.task = task
        self.status = status
        self.result = result
        self.error = error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (self.task, self.status, self.result, self.error) == (
            other.task,
            other.status,
            other.result,
            other.error,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Result(task={self.task!r}, status={self.status.value}, result={self.result!r}, error={self.error!r})"

    def __str__(self) -> str:
        return f"Task: {self.task.id}, Status: {self.status.value}, Result: {self.result!r}, Error: {self.error!r}"
