"""Results across processes: what became of a finished durable task, kept by a backend for a while.

A backend with the optional :class:`ResultStoreBackend` capability stores a :class:`TaskOutcome` in the same
step that settles the task (``ack_with_outcome`` / ``fail_with_outcome``), keeps it for a TTL, and wakes
whoever waits for it (``wait_outcome``), in this process or another. ``TaskManager.handle(task_id)`` of a
durable task reads it there, so a producer that never started its manager can await a result.
"""

from __future__ import annotations

import sys
import time
import traceback as tb
import uuid
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import msgspec

from worker_core.errors import PayloadError, WorkerError, error_text, safe_str
from worker_core.status import TERMINAL_STATUSES, TaskStatus

from .types import DurableTaskLease

__all__ = (
    "DEFAULT_RECENT_OUTCOMES",
    "DEFAULT_RESULT_TTL",
    "DELIVERY_LIMIT_ERROR",
    "RESULT_BYTES",
    "TRACEBACK_CHARS",
    "UNREADABLE_TASK_ERROR",
    "OutcomeConfigurableBackend",
    "RemoteTaskError",
    "ResultNotStoredError",
    "ResultStoreBackend",
    "TaskOutcome",
    "dead_letter_outcome",
    "outcome_for",
)

#: Seconds a finished durable task's outcome is kept by default (``durable_result_ttl``).
DEFAULT_RESULT_TTL: Final = 3600.0
#: Finished tasks listed per queue by default (``recent_outcomes``), newest first.
DEFAULT_RECENT_OUTCOMES: Final = 100
#: Characters of a traceback an outcome keeps at most (its end: the innermost frames and the error).
TRACEBACK_CHARS: Final = 8000
#: Characters of a result's display text an outcome keeps at most.
RESULT_TEXT_CHARS: Final = 4096
#: Bytes of a result (encoded as JSON) an outcome keeps at most by default (``durable_result_max_bytes``): a
#: larger one is not stored (``ResultNotStoredError``; the task still completed). Large results belong in a blob
#: store, their key in the result.
RESULT_BYTES: Final = 1 << 20


class TaskOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one finished durable task (``status`` is terminal).

    ``result`` is the task's return value encoded as JSON by msgspec (``None`` when it had none or it is not
    ``COMPLETED``); :meth:`value` decodes it. A result that could not be encoded is not stored: ``error_type``
    then says ``ResultNotStoredError`` and the task is still ``COMPLETED``. A protobuf message result is kept
    as its JSON mapping. ``result_text`` is the result for display (what gRPC ``GetTask`` and a dashboard show:
    a protobuf message in one-line text format), at most :data:`RESULT_TEXT_CHARS` characters. Times are epoch
    seconds; ``metadata`` is the task's (trace context, the gRPC owner).
    """

    id: uuid.UUID
    handler: str
    queue: str
    status: TaskStatus
    result: bytes | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    attempts: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    metadata: dict[str, str] = {}
    result_text: str = ""

    def encode(self) -> bytes:
        """The outcome as stored (JSON)."""
        return _ENCODER.encode(self)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview | str) -> TaskOutcome:
        """An outcome read back from a store.

        Raises:
            PayloadError: the bytes are not an outcome (corrupt or foreign data), or its status is not terminal.
        """
        try:
            outcome = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise PayloadError(f"stored task outcome cannot be decoded: {exc}") from None
        if outcome.status not in TERMINAL_STATUSES:
            raise PayloadError(f"stored task outcome has a non-terminal status {outcome.status}")
        return outcome

    def value(self, type: Any = Any) -> Any:
        """The task's result decoded (into ``type`` when given), or its error raised.

        Raises:
            RemoteTaskError: the task ``FAILED`` (its type, message and traceback are on the error).
            TaskCancelledError, TaskTimeoutError: it was cancelled, or its last attempt timed out.
            ResultNotStoredError: it completed but its result could not be encoded.
            PayloadError: the stored result does not decode (into ``type``).
        """
        from worker_core.errors import TaskCancelledError, TaskTimeoutError

        status = self.status
        if status is TaskStatus.COMPLETED:
            if self.error_type == ResultNotStoredError.__name__:
                raise ResultNotStoredError(self.error_message)
            if self.result is None:
                return None
            try:
                return msgspec.json.decode(self.result, type=type)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise PayloadError(f"result of task {self.id} cannot be decoded: {exc}") from None
        if status is TaskStatus.CANCELLED:
            raise TaskCancelledError(self.error_message or f"task {self.id} was cancelled")
        if status is TaskStatus.DEADLINE_EXCEEDED:
            raise TaskTimeoutError(self.error_message or f"task {self.id} exceeded its timeout")
        raise RemoteTaskError(self)


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(TaskOutcome)


class RemoteTaskError(WorkerError):
    """A durable task failed (possibly on another node): ``error_type``, ``error_message``, ``traceback``."""

    def __init__(self, outcome: TaskOutcome) -> None:
        self.outcome = outcome
        self.error_type = outcome.error_type
        self.error_message = outcome.error_message
        self.traceback = outcome.traceback
        super().__init__(f"{outcome.error_type}: {outcome.error_message}" if outcome.error_type else "task failed")


class ResultNotStoredError(WorkerError):
    """A durable task completed, but its result could not be encoded for the result store (not kept)."""


def outcome_for(
    lease: DurableTaskLease,
    status: TaskStatus,
    result: Any,
    error: BaseException | None,
    *,
    started_at: float = 0.0,
    max_bytes: int = RESULT_BYTES,
) -> TaskOutcome:
    """The outcome to store for the attempt of ``lease`` that ended ``status`` (``result``, ``error``).

    A result over ``max_bytes`` as JSON is not kept (``ResultNotStoredError`` says so).
    """
    record = lease.task
    assert record.id is not None
    encoded: bytes | None = None
    error_type = error_message = trace = text = ""
    if status is TaskStatus.COMPLETED:
        if result is not None:
            text = display_text(result)
            try:
                encoded = _ENCODER.encode(_protobuf_mapping(result))
            except (TypeError, ValueError, OverflowError) as exc:  # not JSON-able: said so, never lost silently
                error_type = ResultNotStoredError.__name__
                error_message = f"the result ({type(result).__qualname__}) could not be encoded: {error_text(exc)}"
            if encoded is not None and len(encoded) > max_bytes:
                error_type = ResultNotStoredError.__name__
                error_message = (
                    f"the result ({type(result).__qualname__}) is {len(encoded):,} bytes as JSON, over the "
                    f"{max_bytes:,}-byte limit of a stored result (durable_result_max_bytes)"
                )
                encoded = None
    elif error is not None:
        error_type = _qualified(type(error))
        error_message = error_text(error)
        if error.__traceback__ is not None:
            trace = "".join(tb.format_exception(error))[-TRACEBACK_CHARS:]
    return TaskOutcome(
        id=record.id,
        handler=record.handler,
        queue=record.queue,
        status=status,
        result=encoded,
        error_type=error_type,
        error_message=error_message,
        traceback=trace,
        attempts=lease.attempts,
        started_at=started_at,
        finished_at=time.time(),
        metadata=dict(record.metadata) if record.metadata else {},
        result_text=text,
    )


#: ``error_type`` of the outcome of a task the backend dead-lettered after too many unsettled deliveries.
DELIVERY_LIMIT_ERROR: Final = "DeliveryLimitExceeded"
#: ``error_type`` of the outcome of a task whose stored record could not be read (corrupt or foreign data).
UNREADABLE_TASK_ERROR: Final = "UnreadableTask"


def dead_letter_outcome(
    task_id: uuid.UUID,
    reason: str,
    *,
    handler: str = "",
    queue: str = "",
    attempts: int = 0,
    metadata: dict[str, str] | None = None,
) -> TaskOutcome:
    """The ``FAILED`` outcome of a task a backend dead-lettered on its own (no attempt settled it).

    ``reason`` is the backend's dead-letter reason; one that starts with ``"delivery limit"`` gives
    :data:`DELIVERY_LIMIT_ERROR` as the error type, any other :data:`UNREADABLE_TASK_ERROR`. Awaiting the task's
    handle then raises :class:`RemoteTaskError` with that type, instead of waiting for an outcome that never
    comes.
    """
    kind = DELIVERY_LIMIT_ERROR if reason.startswith("delivery limit") else UNREADABLE_TASK_ERROR
    return TaskOutcome(
        id=task_id,
        handler=handler,
        queue=queue,
        status=TaskStatus.FAILED,
        error_type=kind,
        error_message=reason,
        attempts=attempts,
        finished_at=time.time(),
        metadata=metadata or {},
    )


def display_text(value: object) -> str:
    """``value`` as text for display: a string as is, bytes decoded, a protobuf message in one-line text format."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    elif _is_protobuf(value):
        from google.protobuf import text_format

        text = text_format.MessageToString(value, as_one_line=True)  # type: ignore[arg-type]
    else:
        text = safe_str(value, RESULT_TEXT_CHARS)
    return text[:RESULT_TEXT_CHARS]


def _is_protobuf(value: object) -> bool:
    module = sys.modules.get("google.protobuf.message")  # protobuf is optional: a message means it is loaded
    return module is not None and isinstance(value, module.Message)


def _protobuf_mapping(value: object) -> object:
    """A protobuf message as its JSON mapping (msgspec encodes the rest as it is)."""
    if not _is_protobuf(value):
        return value
    from google.protobuf import json_format

    return json_format.MessageToDict(value)  # type: ignore[arg-type]


def _qualified(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


@runtime_checkable
class ResultStoreBackend(Protocol):
    """Optional: keep finished tasks' outcomes for a while, and wake whoever waits for one.

    ``ttl`` is seconds (> 0). Storing happens in the same step as the settle it goes with, so an outcome is
    visible exactly when the task left the queue. ``recent_outcomes`` lists at most the last
    ``recent_limit`` outcomes per queue (the backend's bound), newest first; expired ones are left out.
    """

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """``ack`` and store ``outcome`` at once. Raises LeaseLostError (nothing stored) like ``ack``."""
        ...

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """``fail`` (dead-letter) and store ``outcome`` at once. Raises LeaseLostError like ``fail``."""
        ...

    async def get_outcome(self, task_id: uuid.UUID) -> TaskOutcome | None:
        """The stored outcome of ``task_id``, or ``None`` (unknown, not finished, or expired)."""
        ...

    async def wait_outcome(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` as soon as it is stored (at once if it is); ``None`` after ``max_wait`` s."""
        ...

    async def recent_outcomes(self, queue: str, limit: int) -> Sequence[TaskOutcome]:
        """Up to ``limit`` outcomes of tasks of ``queue`` that finished most recently, newest first."""
        ...


@runtime_checkable
class OutcomeConfigurableBackend(Protocol):
    """Optional: a result store that settles some tasks itself learns how long to keep their outcomes.

    A backend may dead-letter a task without any attempt settling it (the delivery limit, an unreadable record);
    it stores :func:`dead_letter_outcome` for such a task. The manager calls this at start with its
    ``durable_result_ttl`` (``None``: store none); before that the backend keeps them for
    :data:`DEFAULT_RESULT_TTL`.
    """

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the outcomes of tasks the backend dead-letters itself for ``ttl`` seconds (``None``: not at all)."""
        ...
