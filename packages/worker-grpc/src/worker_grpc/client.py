"""``WorkerClient``: a typed asyncio client of the WorkerService (ours or go-worker's).

It takes and returns plain Python values (``uuid.UUID`` ids, frozen dataclasses, your payload messages)
and raises :mod:`worker_grpc.errors` exceptions, never ``grpc.RpcError``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from ._proto.worker.v1 import worker_pb2 as pb
from ._proto.worker.v1 import worker_pb2_grpc as pb_grpc
from ._status import error_from_rpc
from .errors import RpcError
from .tls import ClientTLS

__all__ = ("TERMINAL_STATUSES", "DurableTaskRequest", "TaskInfo", "TaskRequest", "TaskResult", "WorkerClient")

#: go-worker status names of tasks that will not change any more.
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Cancelled", "ContextDeadlineReached", "Invalid"})


def _pack(payload: Message | None) -> AnyMessage | None:
    if payload is None:
        return None
    packed = AnyMessage()
    packed.Pack(payload)
    return packed


def _duration(seconds: float | None) -> Duration | None:
    if seconds is None:
        return None
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _metadata(metadata: Mapping[str, str] | None, queue: str, weight: int | None) -> dict[str, str]:
    merged = dict(metadata or {})
    if queue:
        merged["queue"] = queue
    if weight is not None:
        merged["weight"] = str(weight)
    return merged


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """An in-memory task to register: the handler ``name`` and its ``payload`` message.

    ``queue`` and ``weight`` travel as the ``queue`` / ``weight`` metadata keys. ``retry_delay`` is
    seconds (``None``: the server's default).
    """

    name: str
    payload: Message | None = None
    description: str = ""
    priority: int = 0
    retries: int = 0
    retry_delay: float | None = None
    queue: str = ""
    weight: int | None = None
    correlation_id: str = ""
    idempotency_key: str = ""
    metadata: Mapping[str, str] | None = None

    def to_proto(self) -> pb.Task:
        """The wire message."""
        return pb.Task(
            name=self.name,
            description=self.description,
            priority=self.priority,
            retries=self.retries,
            retry_delay=_duration(self.retry_delay),
            payload=_pack(self.payload),
            correlation_id=self.correlation_id,
            idempotency_key=self.idempotency_key,
            metadata=_metadata(self.metadata, self.queue, self.weight),
        )


@dataclass(frozen=True, slots=True)
class DurableTaskRequest:
    """A durable task to register: the handler ``name`` and its (required) ``payload`` message."""

    name: str
    payload: Message
    description: str = ""
    priority: int = 1
    retries: int = 0
    retry_delay: float | None = None
    queue: str = ""
    weight: int | None = None
    idempotency_key: str = ""
    metadata: Mapping[str, str] | None = None

    def to_proto(self) -> pb.DurableTask:
        """The wire message."""
        return pb.DurableTask(
            name=self.name,
            description=self.description,
            priority=self.priority,
            retries=self.retries,
            retry_delay=_duration(self.retry_delay),
            payload=_pack(self.payload),
            idempotency_key=self.idempotency_key,
            metadata=_metadata(self.metadata, self.queue, self.weight),
        )


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What ``GetTask`` says about a task; ``status`` is go-worker's name (``"Completed"``, ...)."""

    id: uuid.UUID
    name: str
    status: str
    output: str
    error: str

    @property
    def done(self) -> bool:
        """The task reached a terminal status."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class TaskResult:
    """One result from ``StreamResults``: the text of the task's output, or of its error."""

    id: uuid.UUID
    output: str
    error: str

    @property
    def ok(self) -> bool:
        """The task succeeded (no error text)."""
        return not self.error


def _unusable(exc: Exception) -> RpcError:
    return RpcError(grpc.StatusCode.CANCELLED, f"the client's channel cannot be used: {exc}")


def _ids(task_ids: Iterable[uuid.UUID | str]) -> list[str]:
    return [str(i) for i in task_ids]


@final
class WorkerClient:
    """Typed async client of the WorkerService.

    ``WorkerClient(channel)`` uses your ``grpc.aio`` channel (you close it);
    ``WorkerClient.connect(address, tls=...)`` opens one that :meth:`close` (or ``async with``) closes.
    Every method takes ``rpc_timeout``: the call's gRPC deadline in seconds, which the server sees too.

    Args:
        channel: A ``grpc.aio.Channel``.
        metadata: Sent with every call, e.g. ``[("authorization", "Bearer <token>")]``.
        timeout: Default ``rpc_timeout`` of unary calls (``None``: no deadline).
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, metadata: Sequence[tuple[str, str]] = (), timeout: float | None = None
    ) -> None:
        self._channel = channel
        self._stub = pb_grpc.WorkerServiceStub(channel)
        self._metadata = tuple(metadata)
        self._timeout = timeout
        self._owns_channel = False

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        tls: ClientTLS | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> WorkerClient:
        """A client on a new channel to ``address`` (TLS when ``tls`` is given, plaintext otherwise)."""
        if tls is None:
            channel = grpc.aio.insecure_channel(address, options=list(options))
        else:
            channel = grpc.aio.secure_channel(address, tls.credentials(), options=list(options))
        client = cls(channel, metadata=metadata, timeout=timeout)
        client._owns_channel = True
        return client

    async def close(self) -> None:
        """Close the channel if this client opened it."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> WorkerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _timeout_or_default(self, rpc_timeout: float | None) -> float | None:
        return self._timeout if rpc_timeout is None else rpc_timeout

    async def register_tasks(
        self, tasks: Iterable[TaskRequest | pb.Task], *, rpc_timeout: float | None = None
    ) -> list[uuid.UUID]:
        """Register in-memory tasks; their ids in order.

        On failure the error's ``accepted_ids`` lists the tasks that were registered anyway (they run).
        """
        request = pb.RegisterTasksRequest(tasks=[t.to_proto() if isinstance(t, TaskRequest) else t for t in tasks])
        try:
            response = await self._stub.RegisterTasks(
                request, metadata=self._metadata, timeout=self._timeout_or_default(rpc_timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, registering=True) from exc
        except grpc.aio.UsageError as exc:  # e.g. the channel was closed
            raise _unusable(exc) from exc
        return [uuid.UUID(i) for i in response.ids]

    async def register_task(self, task: TaskRequest | pb.Task, *, rpc_timeout: float | None = None) -> uuid.UUID:
        """Register one in-memory task; its id."""
        return (await self.register_tasks([task], rpc_timeout=rpc_timeout))[0]

    async def register_durable_tasks(
        self, tasks: Iterable[DurableTaskRequest | pb.DurableTask], *, rpc_timeout: float | None = None
    ) -> list[uuid.UUID]:
        """Register durable tasks (persisted by the server's durable backend); their ids in order."""
        request = pb.RegisterDurableTasksRequest(
            tasks=[t.to_proto() if isinstance(t, DurableTaskRequest) else t for t in tasks]
        )
        try:
            response = await self._stub.RegisterDurableTasks(
                request, metadata=self._metadata, timeout=self._timeout_or_default(rpc_timeout)
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, registering=True) from exc
        except grpc.aio.UsageError as exc:  # e.g. the channel was closed
            raise _unusable(exc) from exc
        return [uuid.UUID(i) for i in response.ids]

    async def register_durable_task(
        self, task: DurableTaskRequest | pb.DurableTask, *, rpc_timeout: float | None = None
    ) -> uuid.UUID:
        """Register one durable task; its id."""
        return (await self.register_durable_tasks([task], rpc_timeout=rpc_timeout))[0]

    async def stream_results(
        self,
        task_ids: Iterable[uuid.UUID | str] = (),
        *,
        close_on_completion: bool = False,
        rpc_timeout: float | None = None,
    ) -> AsyncIterator[TaskResult]:
        """Results as tasks finish: of ``task_ids`` only when given (already finished ones first).

        With ``close_on_completion`` the iteration ends once every listed task has sent its result.
        Leaving the loop early (``break``) cancels the call on the server at once.
        """
        request = pb.StreamResultsRequest(ids=_ids(task_ids), close_on_completion=close_on_completion)
        try:
            call = self._stub.StreamResults(request, metadata=self._metadata, timeout=rpc_timeout)
        except grpc.aio.UsageError as exc:
            raise _unusable(exc) from exc
        try:
            async for message in call:
                yield TaskResult(uuid.UUID(message.id), message.output, message.error)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, registering=False) from exc
        except grpc.aio.UsageError as exc:  # e.g. the channel was closed
            raise _unusable(exc) from exc
        finally:
            call.cancel()

    async def cancel_task(self, task_id: uuid.UUID | str, *, rpc_timeout: float | None = None) -> None:
        """Cancel a task (no error for one that already finished)."""
        try:
            await self._stub.CancelTask(
                pb.CancelTaskRequest(id=str(task_id)),
                metadata=self._metadata,
                timeout=self._timeout_or_default(rpc_timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, registering=False) from exc
        except grpc.aio.UsageError as exc:  # e.g. the channel was closed
            raise _unusable(exc) from exc

    async def get_task(self, task_id: uuid.UUID | str, *, rpc_timeout: float | None = None) -> TaskInfo:
        """A task's name, status, output and error."""
        try:
            response = await self._stub.GetTask(
                pb.GetTaskRequest(id=str(task_id)),
                metadata=self._metadata,
                timeout=self._timeout_or_default(rpc_timeout),
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, registering=False) from exc
        except grpc.aio.UsageError as exc:  # e.g. the channel was closed
            raise _unusable(exc) from exc
        return TaskInfo(uuid.UUID(response.id), response.name, response.status, response.output, response.error)
