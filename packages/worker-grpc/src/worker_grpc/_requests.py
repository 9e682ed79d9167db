"""What the servicer's RPCs share per request: idempotency keys, the call's trace context, aborting a call.

Nothing here holds state beyond one request (:class:`RequestKeys`); the servicer composes these.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn, final

import grpc

from . import _convert
from ._proto.worker.v1 import worker_pb2 as pb
from ._status import ACCEPTED_IDS_KEY, ERROR_KEY, FAILED_INDEX_KEY, status_for
from .errors import IdempotencyConflictError
from .idempotency import IdempotencyCache

__all__ = ("RequestKeys", "abort", "trace_context", "with_trace")

logger = logging.getLogger("worker_grpc.servicer")

_Context = grpc.aio.ServicerContext[Any, Any]


@final
class RequestKeys:
    """The idempotency keys of one request: checked against the cache and against each other."""

    __slots__ = ("_cache", "_scope", "_seen")

    def __init__(self, cache: IdempotencyCache | None, scope: str) -> None:
        self._cache = cache
        self._scope = scope
        self._seen: dict[str, bytes] = {}

    def check(self, message: pb.Task | pb.DurableTask) -> tuple[str, bytes]:
        """The task's key and signature (``""`` when it has none or keys are off).

        A key already used for another task (in the cache, or earlier in this request) raises here,
        before anything of the request is registered.
        """
        cache = self._cache
        raw = message.idempotency_key
        key = raw.strip() if raw and cache is not None else ""
        if not key or cache is None:
            return "", b""
        # The message type is part of what a key binds to: a Task and a DurableTask never share one.
        sig = message.DESCRIPTOR.full_name.encode() + b":" + _convert.signature(message)
        cache.peek(key, sig, scope=self._scope)
        if self._seen.setdefault(key, sig) != sig:
            raise IdempotencyConflictError(f"idempotency key {key!r} already used for a different task")
        return key, sig


async def abort(
    context: _Context,
    exc: BaseException,
    op: str,
    *,
    accepted: Sequence[uuid.UUID] | None = None,
    index: int | None = None,
) -> NoReturn:
    code, details, kind = status_for(exc, op)
    trailing: list[tuple[str, str]] = []
    if kind:
        trailing.append((ERROR_KEY, kind))
    if accepted is not None:
        trailing.append((ACCEPTED_IDS_KEY, ",".join(str(i) for i in accepted)))
    if index is not None:
        trailing.append((FAILED_INDEX_KEY, str(index)))
    logger.debug("%s refused (task index %s, %d accepted): %s", op, index, len(accepted or ()), code.name)
    await context.abort(code, details, tuple(trailing))


#: W3C trace-context headers taken from the call's metadata into each registered task's metadata, so the span
#: of the code that runs the task (worker-otel's OTelTracer) continues the caller's trace: client -> gRPC ->
#: (Redis) -> worker. A key the task message already carries in its own metadata wins.
_TRACE_KEYS = ("traceparent", "tracestate")


def trace_context(context: _Context) -> dict[str, str]:
    """The trace-context headers of this call ({} when the caller sent none)."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in _TRACE_KEYS and isinstance(value, str):
            found[key] = value
    return found


def with_trace(metadata: dict[str, str] | None, trace: dict[str, str]) -> dict[str, str]:
    merged = dict(trace)
    if metadata:
        merged.update(metadata)
    return merged
