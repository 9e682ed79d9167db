"""Error <-> gRPC status, on both sides of the wire, and the trailing metadata keys we add.

Server side, :func:`status_for` maps worker-core errors to codes (go-worker's mapping, with its gaps
fixed: queue full is ``RESOURCE_EXHAUSTED``, a duplicate durable task ``ALREADY_EXISTS``, a stopped
manager ``UNAVAILABLE``). Besides the status, a failed call carries trailing metadata:

``worker-error``
    The worker-core error class name (``QueueFullError``, ``HandlerNotFoundError``, ...).
``worker-accepted-ids``
    Registration RPCs only: comma-separated ids of the request's tasks that were accepted, in request
    order (empty when none was). They are registered and will run.
``worker-failed-index``
    Registration RPCs only: the 0-based index in the request of the first task that failed.

Client side, :func:`error_from_rpc` turns a ``grpc.aio.AioRpcError`` into a :mod:`worker_grpc.errors` class.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from worker_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    DurableOnlyError,
    HandlerNotFoundError,
    InvalidTaskError,
    ManagerStoppedError,
    PayloadError,
    QueueFullError,
    TaskExistsError,
    TaskNotFoundError,
    WorkerError,
)

from . import errors

logger = logging.getLogger(__name__)

ERROR_KEY = "worker-error"
ACCEPTED_IDS_KEY = "worker-accepted-ids"
FAILED_INDEX_KEY = "worker-failed-index"

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (TaskExistsError, grpc.StatusCode.ALREADY_EXISTS),  # duplicate durable task, idempotency conflict
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ManagerStoppedError, grpc.StatusCode.UNAVAILABLE),
    (BackendUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (TaskNotFoundError, grpc.StatusCode.NOT_FOUND),
    (HandlerNotFoundError, grpc.StatusCode.NOT_FOUND),
    (PayloadError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidTaskError, grpc.StatusCode.INVALID_ARGUMENT),
    (TypeError, grpc.StatusCode.INVALID_ARGUMENT),  # HandlerPayloadTypeError
    (DurableOnlyError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigurationError, grpc.StatusCode.FAILED_PRECONDITION),  # e.g. no durable backend configured
    (BackendError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: BaseException, op: str) -> tuple[grpc.StatusCode, str, str]:
    """``(code, details, worker-error name)`` for an error raised while serving ``op``."""
    if isinstance(exc, errors.StatusError):
        return exc.code, exc.details, ""
    if isinstance(exc, WorkerError):
        for kind, code in _CODES:
            if isinstance(exc, kind):
                return code, f"{op}: {exc}", type(exc).__name__
    # Not ours: do not leak internals to the caller; the log has the traceback.
    logger.error("%s failed with an unexpected error", op, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"{op}: internal error ({type(exc).__name__})", ""


_BY_CODE: dict[grpc.StatusCode, type[errors.RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequestError,
    grpc.StatusCode.ALREADY_EXISTS: errors.RemoteTaskExistsError,
    grpc.StatusCode.UNAVAILABLE: errors.ServiceUnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthError,
    grpc.StatusCode.PERMISSION_DENIED: errors.AuthError,
}
_BY_KIND: dict[str, type[errors.RpcError]] = {
    "QueueFullError": errors.RemoteQueueFullError,
    "ManagerStoppedError": errors.RemoteManagerStoppedError,
    "HandlerNotFoundError": errors.RemoteHandlerNotFoundError,
    "TaskNotFoundError": errors.RemoteTaskNotFoundError,
}


def error_from_rpc(exc: grpc.aio.AioRpcError, *, registering: bool) -> errors.RpcError:
    """The :mod:`worker_grpc.errors` exception for a failed call (``registering``: a registration RPC)."""
    code = exc.code()
    details = exc.details() or ""
    trailing = {}
    for key, value in exc.trailing_metadata() or ():
        if isinstance(value, str):
            trailing[key] = value
    cls = _BY_KIND.get(trailing.get(ERROR_KEY, ""))
    if cls is None and code == grpc.StatusCode.NOT_FOUND:
        # A go-worker server sends no worker-error: NOT_FOUND means "no handler" when registering.
        cls = errors.RemoteHandlerNotFoundError if registering else errors.RemoteTaskNotFoundError
    if cls is None:
        cls = _BY_CODE.get(code, errors.RpcError)
    accepted: tuple[uuid.UUID, ...] = ()
    raw_ids = trailing.get(ACCEPTED_IDS_KEY, "")
    if raw_ids:
        accepted = tuple(uuid.UUID(part) for part in raw_ids.split(","))
    raw_index = trailing.get(FAILED_INDEX_KEY, "")
    index = int(raw_index) if raw_index.isdigit() else None
    return cls(code, details, accepted_ids=accepted, failed_index=index)
