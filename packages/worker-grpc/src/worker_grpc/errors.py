"""Errors of worker-grpc: what the client raises for a failed call, and what the server maps to a status.

Every class derives from :class:`worker_core.errors.WorkerError`, so ``grpc.RpcError`` never escapes
the package. Where a remote failure has a worker-core meaning the class also derives from that core
error (a ``NOT_FOUND`` from ``get_task`` is a :class:`~worker_core.errors.TaskNotFoundError`), so code
written against a local ``TaskManager`` catches the same errors from a remote one.
"""

from __future__ import annotations

import uuid

import grpc
from worker_core.errors import (
    BackendUnavailableError,
    HandlerNotFoundError,
    InvalidTaskError,
    ManagerStoppedError,
    QueueFullError,
    TaskExistsError,
    TaskNotFoundError,
    WorkerError,
)

__all__ = (
    "AuthError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "RemoteHandlerNotFoundError",
    "RemoteManagerStoppedError",
    "RemoteQueueFullError",
    "RemoteTaskExistsError",
    "RemoteTaskNotFoundError",
    "RpcError",
    "ServiceUnavailableError",
    "StatusError",
)


class StatusError(WorkerError):
    """Raise it from an auth hook (or anything the servicer calls) to answer with this exact gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details


class IdempotencyConflictError(TaskExistsError):
    """An idempotency key was used before for a different task (answered ``ALREADY_EXISTS``)."""


class RpcError(WorkerError):
    """A WorkerService call failed; ``code`` and ``details`` are the gRPC status.

    For ``RegisterTasks`` and ``RegisterDurableTasks``, ``accepted_ids`` lists the ids of the tasks of
    the request that the server accepted (they are registered and will run; for ``RegisterTasks`` those
    before the failed one, for ``RegisterDurableTasks``, stored in one batch, possibly some after it too),
    and ``failed_index`` the position in the request of the first task that failed (``None`` when the
    request as a whole was refused).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        accepted_ids: tuple[uuid.UUID, ...] = (),
        failed_index: int | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.accepted_ids = accepted_ids
        self.failed_index = failed_index


class InvalidRequestError(RpcError, InvalidTaskError):
    """``INVALID_ARGUMENT``: a bad payload, id, weight, duration, or an empty task list."""


class RemoteTaskNotFoundError(RpcError, TaskNotFoundError):
    """``NOT_FOUND`` from ``GetTask``/``CancelTask``: the server knows no task with this id."""


class RemoteHandlerNotFoundError(RpcError, HandlerNotFoundError):
    """``NOT_FOUND`` from a registration: no handler is registered under the task's name."""


class RemoteTaskExistsError(RpcError, TaskExistsError):
    """``ALREADY_EXISTS``: a duplicate durable task, or an idempotency key used for another task."""


class RemoteQueueFullError(RpcError, QueueFullError):
    """``RESOURCE_EXHAUSTED`` because the server's queue is full (retry later)."""


class RemoteManagerStoppedError(RpcError, ManagerStoppedError):
    """``UNAVAILABLE`` because the server's TaskManager is stopping or stopped."""


class ServiceUnavailableError(RpcError, BackendUnavailableError):
    """``UNAVAILABLE`` for any other reason: the server cannot be reached (retryable)."""


class AuthError(RpcError):
    """``UNAUTHENTICATED`` or ``PERMISSION_DENIED``: the server's auth hook refused the call."""
