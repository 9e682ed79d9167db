"""Every error raised by worker packages, in one shallow tree, and the control-flow signals.

Catch :class:`WorkerError` to catch anything the library raises. Plugins subclass the categories here
(``RedisBackendError(BackendError)``) and wrap third-party exceptions at their boundary, so that
``redis.exceptions.*`` or ``grpc.RpcError`` never escape a package.

:class:`Retry` and :class:`Abort` are *signals* raised by task code, not errors: they derive from
:class:`TaskSignal`, so ``except WorkerError`` never swallows them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = (
    "ERROR_TEXT_CHARS",
    "Abort",
    "BackendError",
    "BackendUnavailableError",
    "ConfigurationError",
    "DurableOnlyError",
    "DurableTaskExistsError",
    "HandlerNotFoundError",
    "HandlerPayloadTypeError",
    "HandlerRegistrationError",
    "InvalidTaskError",
    "LeaseLostError",
    "ManagerStoppedError",
    "PartialEnqueueError",
    "PayloadError",
    "PluginError",
    "QueueFullError",
    "Retry",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "ScheduleSpecError",
    "TaskAlreadyStartedError",
    "TaskCancelledError",
    "TaskExistsError",
    "TaskNotFoundError",
    "TaskSignal",
    "TaskTimeoutError",
    "WorkerError",
    "WorkerProcessError",
    "WrongLoopError",
    "error_text",
    "safe_str",
)


class WorkerError(Exception):
    """Base class for every error raised by worker packages."""


class WrongLoopError(WorkerError, RuntimeError):
    """A manager was used from another event loop than the one it belongs to (the loop it was first used on)."""


class ConfigurationError(WorkerError, ValueError):
    """Bad settings: an invalid option value, an unknown backend scheme or codec name."""


class PluginError(WorkerError):
    """A plugin failed to load, or two plugins registered the same name."""


class InvalidTaskError(WorkerError, ValueError):
    """A task is malformed: non-callable ``execute``, wrong field types, bad id."""


class TaskNotFoundError(WorkerError, LookupError):
    """No task with this id is known to the manager."""


class TaskExistsError(WorkerError):
    """A task with this id is already registered."""


class TaskAlreadyStartedError(WorkerError):
    """The task is running or finished, so it cannot be started again (``execute_task``)."""


class TaskCancelledError(WorkerError):
    """The task was cancelled (``cancel_task``, ``cancel_all``, ``stop_now``); the error a cancelled task ends with."""


class TaskTimeoutError(WorkerError, TimeoutError):
    """An attempt ran past its timeout; the error a ``DEADLINE_EXCEEDED`` task ends with."""


class NotInTaskError(WorkerError, LookupError):
    """:func:`~worker_core.current_context` was called outside the code of a running task."""


class PartialRegistrationError(ExceptionGroup[Exception]):
    """``register_tasks`` / ``register_durable_tasks`` rejected some tasks; the others are registered.

    The exceptions are the rejections, in the order the tasks were given; ``accepted`` holds the ids of the
    tasks that were registered, in the same order. ``except* InvalidTaskError`` and ``except ExceptionGroup``
    both still catch it.
    """

    accepted: list[uuid.UUID]

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], accepted: Iterable[uuid.UUID] = ()
    ) -> PartialRegistrationError:
        self = super().__new__(cls, message, exceptions)
        self.accepted = list(accepted)
        return self

    def __init__(self, message: str, exceptions: Sequence[Exception], accepted: Iterable[uuid.UUID] = ()) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> PartialRegistrationError:  # type: ignore[override]
        return PartialRegistrationError(self.message, excs, self.accepted)


class QueueFullError(WorkerError):
    """The manager already holds ``max_tasks`` tasks that have not started; nothing was queued."""


class ManagerStoppedError(WorkerError):
    """The manager is stopping or stopped and accepts no new work."""


class DurableOnlyError(WorkerError):
    """A durable backend is configured: use ``register_durable_task`` instead of ``register_task``."""


class ScheduleSpecError(ConfigurationError):
    """A schedule spec (cron expression, descriptor, interval) or time zone that cannot be used."""


class ScheduleExistsError(WorkerError):
    """A schedule with this name is registered already (go-worker: "cron task already registered")."""


class ScheduleNotFoundError(WorkerError, LookupError):
    """No schedule has this name."""


class HandlerNotFoundError(WorkerError, LookupError):
    """No durable (or gRPC) handler is registered under this name."""


class HandlerRegistrationError(WorkerError, ValueError):
    """A handler could not be registered: empty name, duplicate name, or an incomplete spec."""


class HandlerPayloadTypeError(WorkerError, TypeError):
    """A typed handler received a payload of another type than the one it declared."""


class PayloadError(WorkerError, ValueError):
    """A payload could not be encoded or decoded by the codec; ``__cause__`` holds the codec's error."""


class BackendError(WorkerError):
    """Base for durable backend failures; backend plugins subclass this."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached or the connection was lost (retryable)."""


class DurableTaskExistsError(TaskExistsError, BackendError):
    """The durable backend already holds a task with this id (go-worker's ErrDurableTaskAlreadyExists).

    ``ids`` names the tasks that were not stored, when the raiser knows them: a batch enqueue
    (``BatchEnqueueBackend.enqueue_many``) lists one entry per rejected task, in batch order. Empty otherwise.
    """

    def __init__(self, *args: object, ids: Iterable[uuid.UUID] = ()) -> None:
        super().__init__(*args)
        self.ids: tuple[uuid.UUID, ...] = tuple(ids)


class PartialEnqueueError(BackendError):
    """A batch enqueue failed part way; it says exactly what was stored (``__cause__`` holds the failure).

    ``stored``: stored for sure. ``unknown``: the call that failed was cut off (the connection was lost) after it
    was sent, so these may or may not be stored. Every other task of the batch was not stored. ``duplicates``:
    skipped before the failure because their id was already stored.
    """

    def __init__(
        self,
        *args: object,
        stored: Iterable[uuid.UUID] = (),
        unknown: Iterable[uuid.UUID] = (),
        duplicates: Iterable[uuid.UUID] = (),
    ) -> None:
        super().__init__(*args)
        self.stored: tuple[uuid.UUID, ...] = tuple(stored)
        self.unknown: tuple[uuid.UUID, ...] = tuple(unknown)
        self.duplicates: tuple[uuid.UUID, ...] = tuple(duplicates)


class LeaseLostError(BackendError):
    """The lease is gone or was handed to another consumer (stale fencing token); nothing was changed."""


class WorkerProcessError(WorkerError):
    """A plain function's pool process died while running it, or its result could not be pickled back."""


class TaskSignal(Exception):
    """Control flow raised by task code; deliberately NOT a :class:`WorkerError`."""


class Retry(TaskSignal):
    """Ask for another attempt, after ``delay`` seconds (the task's backoff when ``None``).

    A ``Retry`` counts against the task's retries; when none remain the task ends ``FAILED``.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        value: object = delay
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0
        ):
            raise ValueError(f"Retry delay must be a finite number of seconds >= 0, got {delay!r}")
        self.delay = None if delay is None else float(delay)


class Abort(TaskSignal):
    """End the task now as ``FAILED``, without any further retry."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "task aborted")


#: Characters of an error's text kept wherever it is stored or sent: stored outcomes, dead-letter reasons, gRPC
#: replies, span status. The rest is cut, and the cut says how much was left out.
ERROR_TEXT_CHARS: Final = 4096


def safe_str(value: object, limit: int | None = None) -> str:
    """``str(value)``, never raising, at most ``limit`` characters (``None``: whole).

    A ``__str__`` that raises gives ``"<unprintable T: str() raised E>"`` instead: user objects end up in logs,
    outcomes and replies, and one that cannot be printed must not stop its task from being settled.
    """
    try:
        text = str(value)
    except Exception as exc:
        text = f"<unprintable {type(value).__name__}: str() raised {type(exc).__name__}>"
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}... [{len(text) - limit} more characters]"
    return text


def error_text(error: BaseException, limit: int = ERROR_TEXT_CHARS) -> str:
    """The message of ``error`` for storing or sending: :func:`safe_str`, bounded by ``limit`` characters."""
    return safe_str(error, limit)
