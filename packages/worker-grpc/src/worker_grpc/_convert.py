"""Wire messages -> worker-core objects (server side), and results -> wire text.

Every function raises a worker-core error for bad input (``InvalidTaskError``, ``PayloadError``,
``HandlerNotFoundError``), which the servicer maps to a status code.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from typing import Any

from google.protobuf import text_format
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError, Message
from worker_core import Task, TaskContext, TaskStatus
from worker_core.durable import DurableTask
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import HandlerNotFoundError, InvalidTaskError, PayloadError, safe_str
from worker_core.errors import error_text as bounded_error_text

from ._proto.worker.v1 import worker_pb2 as pb
from .handlers import _Resolved

QUEUE_KEY = "queue"
WEIGHT_KEY = "weight"
CORRELATION_KEY = "correlation_id"
_WEIGHT = re.compile(r"\+?[0-9]{1,10}")
#: Characters of a result's text a reply carries (at most 2 MiB as UTF-8: gRPC refuses messages over 4 MiB by
#: default, and one reply carrying the whole of a large result would fail instead of answering).
OUTPUT_TEXT_CHARS = 512 * 1024
_MAX_INT32 = 2**31 - 1


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 64 else raw[:64] + "...")


def parse_id(raw: str) -> uuid.UUID:
    """A task id from the wire; ``InvalidTaskError`` (``INVALID_ARGUMENT``) when it is not a UUID."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidTaskError(f"invalid task id {_shown(raw)}: not a UUID") from None


def queue_and_weight(metadata: Mapping[str, str]) -> tuple[str, int]:
    """The ``queue`` and ``weight`` metadata keys; a weight must be an integer > 0 (go-worker's rule)."""
    queue = metadata.get(QUEUE_KEY, "").strip()
    raw = metadata.get(WEIGHT_KEY, "").strip()
    if not raw:
        return queue, 1
    if not _WEIGHT.fullmatch(raw) or not 0 < int(raw) <= _MAX_INT32:
        raise InvalidTaskError(f"invalid queue weight {_shown(raw)}: must be an integer > 0")
    return queue, int(raw)


def retry_delay(has_delay: bool, delay: Duration) -> float | None:
    """Seconds from an optional Duration; unset or zero means the manager's default (``None``)."""
    if not has_delay:
        return None
    seconds = delay.seconds + delay.nanos / 1e9
    if seconds < 0:
        raise InvalidTaskError(f"invalid retry_delay {seconds}s: must be >= 0")
    return seconds or None


def retries(value: int) -> int:
    """Task retries from the wire: 0 (go-worker's default: no retries) or more."""
    if value < 0:
        raise InvalidTaskError(f"invalid retries {value}: must be >= 0")
    return value


def handler_for(handlers: Mapping[str, _Resolved], name: str) -> _Resolved:
    """The handler registered under ``name`` (``NOT_FOUND`` otherwise)."""
    handler = handlers.get(name)
    if handler is None:
        raise HandlerNotFoundError(f"no handler registered for {_shown(name)}")
    return handler


def unpack(handler: _Resolved, payload: AnyMessage | None) -> Message | None:
    """Unpack an ``Any`` into the handler's payload type; the wrong type or bad bytes is a ``PayloadError``."""
    if payload is None:
        return None
    type_name = payload.type_url.rpartition("/")[2]
    if type_name != handler.full_name:
        raise PayloadError(
            f"bad payload for {_shown(handler.name)}: expected {handler.full_name}, got {_shown(type_name)}"
        )
    message = handler.make()
    try:
        message.ParseFromString(payload.value)
    except DecodeError as exc:
        raise PayloadError(f"bad payload for {_shown(handler.name)}: cannot decode {handler.full_name}") from exc
    return message


def signature(message: Message) -> bytes:
    """SHA-256 of the deterministic encoding of the whole task message (what an idempotency key binds to)."""
    return hashlib.sha256(message.SerializeToString(deterministic=True)).digest()


def build_task(handler: _Resolved, message: pb.Task) -> Task[Any]:
    """An in-memory :class:`worker_core.Task` that calls ``handler.fn(ctx, payload)``.

    The task's ``metadata`` holds the request's metadata other than ``queue`` and ``weight`` (those become
    the task's fields), plus ``correlation_id``; ``None`` when nothing is left.
    """
    # The hot path of RegisterTasks: each field is read once, and the defaults cost nothing.
    if message.HasField("payload"):
        payload = unpack(handler, message.payload)
    else:
        payload = handler.make() if handler.empty_if_missing else None
    queue, weight, metadata = "", 1, None
    wire_metadata = message.metadata
    if wire_metadata:
        queue, weight = queue_and_weight(wire_metadata)
        if len(wire_metadata) > (QUEUE_KEY in wire_metadata) + (WEIGHT_KEY in wire_metadata):
            metadata = {k: v for k, v in wire_metadata.items() if k != QUEUE_KEY and k != WEIGHT_KEY}
    correlation_id = message.correlation_id
    if correlation_id:
        metadata = metadata if metadata is not None else {}
        metadata.setdefault(CORRELATION_KEY, correlation_id)
    fn = handler.fn
    if handler.is_async:

        async def execute_async(ctx: TaskContext) -> Any:
            return await fn(ctx, payload)

        execute: Any = execute_async
    else:

        def execute_sync(ctx: TaskContext) -> Any:
            return fn(ctx, payload)

        execute = execute_sync
    n_retries = message.retries
    return Task(
        execute,
        name=message.name,
        description=message.description,
        priority=message.priority,
        queue=queue,
        weight=weight,
        retries=retries(n_retries) if n_retries else 0,
        retry_delay=retry_delay(True, message.retry_delay) if message.HasField("retry_delay") else None,
        metadata=metadata,
    )


def build_durable_task(handler: _Resolved, message: pb.DurableTask, task_id: uuid.UUID | None) -> DurableTask:
    """A :class:`worker_core.durable.DurableTask` for the manager's durable backend; the payload is required.

    With ``task_id=None`` the manager assigns the id when it accepts the task.
    """
    if not message.HasField("payload"):
        raise PayloadError(f"missing payload for {_shown(handler.name)}")
    payload = unpack(handler, message.payload)
    metadata = dict(message.metadata)
    queue, weight = queue_and_weight(metadata)
    return DurableTask(
        handler.name,
        payload,
        id=task_id,
        priority=message.priority or 1,  # go-worker: durable priority 0 means 1
        queue=queue,
        weight=weight,
        retries=retries(message.retries),
        retry_delay=retry_delay(message.HasField("retry_delay"), message.retry_delay),
        metadata=metadata or None,
    )


def output_text(value: object) -> str:
    """The text form of a task's result: ``""`` for ``None``, one-line text format for a message.

    Bounded by :data:`OUTPUT_TEXT_CHARS`: a longer text ends in ``"... [N more characters]"``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Message):
        text = text_format.MessageToString(value, as_one_line=True)
    elif isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        return safe_str(value, OUTPUT_TEXT_CHARS)
    return text if len(text) <= OUTPUT_TEXT_CHARS else safe_str(text, OUTPUT_TEXT_CHARS)


def error_text(error: BaseException | None) -> str:
    """The text of a task's error (``""`` on success), bounded; an error ``str()`` cannot print is described."""
    if error is None:
        return ""
    return bounded_error_text(error) or type(error).__name__


def stored_text(outcome: TaskOutcome) -> tuple[str, str]:
    """``(output, error)`` of a stored outcome, as go-worker's GetTask and StreamResults carry them."""
    if outcome.status is TaskStatus.COMPLETED and not outcome.error_type:
        return output_text(outcome.result_text), ""
    return "", outcome.error_message or outcome.error_type or outcome.status.value
