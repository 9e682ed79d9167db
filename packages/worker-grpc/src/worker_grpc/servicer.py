"""The WorkerService on ``grpc.aio``: a thin edge over a :class:`worker_core.TaskManager`.

Semantics are go-worker's (spec §6.3-6.5) with its bugs fixed:

- Tasks belong to the manager, never to the RPC: the RPC only hands them over, so a client that goes
  away, or a deadline, does not cancel a registered task.
- A registration request is validated as a whole before anything is registered (handler, payload,
  weight, retries, idempotency conflicts): a bad task rejects the request and registers nothing. A
  failure while registering (queue full, manager stopping) stops at that task; the tasks before it
  stay registered and their ids are in the ``worker-accepted-ids`` trailing metadata.
- ``StreamResults`` first sends the results of listed ids that already finished, then follows the
  manager's results through a bounded subscription (a slow client loses results under the manager's
  drop policy, counted in its metrics; it never slows the manager). A client that goes away ends the
  stream at once: grpc.aio cancels the handler, which closes the subscription.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, final

import grpc
from worker_core import Task
from worker_core.errors import TaskNotFoundError

from . import _convert
from ._proto.worker.v1 import worker_pb2 as pb
from ._proto.worker.v1 import worker_pb2_grpc as pb_grpc
from ._status import ACCEPTED_IDS_KEY, ERROR_KEY, FAILED_INDEX_KEY, status_for
from .auth import AuthHook, check_auth
from .errors import StatusError
from .handlers import Handlers, resolve_handlers
from .idempotency import IdempotencyCache

if TYPE_CHECKING:
    from worker_core import TaskManager

__all__ = ("SERVICE_NAME", "WorkerServiceServicer")

logger = logging.getLogger(__name__)

SERVICE_NAME = "worker.v1.WorkerService"
_REGISTER_TASKS = f"/{SERVICE_NAME}/RegisterTasks"
_REGISTER_DURABLE = f"/{SERVICE_NAME}/RegisterDurableTasks"
_STREAM_RESULTS = f"/{SERVICE_NAME}/StreamResults"
_CANCEL_TASK = f"/{SERVICE_NAME}/CancelTask"
_GET_TASK = f"/{SERVICE_NAME}/GetTask"

_Context = grpc.aio.ServicerContext[Any, Any]


class _Default:
    """Marker for "a fresh :class:`IdempotencyCache` with its default bounds"."""


_DEFAULT_CACHE = _Default()


@final
class WorkerServiceServicer(pb_grpc.WorkerServiceServicer):
    """Serves ``worker.v1.WorkerService`` from ``manager``, running tasks with ``handlers``.

    Args:
        manager: The started :class:`worker_core.TaskManager` that owns the tasks.
        handlers: Name -> :class:`~worker_grpc.HandlerSpec` mapping, or a :class:`~worker_grpc.HandlerRegistry`.
            They decode the payloads of both registration RPCs; a durable task's name must also be a
            durable handler of the manager, which runs it.
        auth: Called at the start of every RPC (see :mod:`worker_grpc.auth`); ``None`` allows all.
        idempotency: The idempotency cache (a bounded :class:`IdempotencyCache` by default);
            ``None`` turns idempotency keys off.
        stream_buffer: Results buffered per ``StreamResults`` client before the manager's drop policy applies.
    """

    def __init__(
        self,
        manager: TaskManager,
        handlers: Handlers,
        *,
        auth: AuthHook | None = None,
        idempotency: IdempotencyCache | _Default | None = _DEFAULT_CACHE,
        stream_buffer: int = 256,
    ) -> None:
        if stream_buffer < 1:
            raise ValueError("stream_buffer must be >= 1")
        self._manager = manager
        self._handlers = resolve_handlers(handlers)
        self._auth = auth
        self._cache = IdempotencyCache() if isinstance(idempotency, _Default) else idempotency
        self._stream_buffer = stream_buffer
        self._streams = 0

    @property
    def active_streams(self) -> int:
        """``StreamResults`` calls being served right now."""
        return self._streams

    async def RegisterTasks(self, request: pb.RegisterTasksRequest, context: _Context) -> pb.RegisterTasksResponse:
        """Register in-memory tasks; the response lists their ids in request order."""
        if self._auth is not None:
            await check_auth(self._auth, context, _REGISTER_TASKS, request)
        op = "register tasks"
        if not request.tasks:
            await _abort(context, StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"{op}: no tasks in the request"), op)
        cache = self._cache
        trace = _trace_context(context)
        built = []
        for index, message in enumerate(request.tasks):
            try:
                handler = self._handlers.get(message.name) or _convert.handler_for(self._handlers, message.name)
                key, sig = _idempotency(cache, message)
                task = _convert.build_task(handler, message)
                if trace:
                    task.metadata = _with_trace(task.metadata, trace)
                built.append((task, key, sig))
            except Exception as exc:
                await _abort(context, exc, op, accepted=(), index=index)
        ids: list[uuid.UUID] = []
        for index, (task, key, sig) in enumerate(built):
            try:
                if key:
                    ids.append(await self._register_keyed(task, key, sig))
                else:
                    ids.append(await self._manager.register_task(task))
            except Exception as exc:
                await _abort(context, exc, op, accepted=ids, index=index)
        return pb.RegisterTasksResponse(ids=[str(i) for i in ids])

    async def _register_keyed(self, task: Task[Any], key: str, sig: bytes) -> uuid.UUID:
        cache = self._cache
        assert cache is not None
        while True:
            claim = await cache.claim(key, sig)
            if claim.task_id is not None:
                try:
                    self._manager.get_task(claim.task_id)
                except TaskNotFoundError:
                    cache.forget(key)  # pruned by retention: register it anew (go-worker does the same)
                    continue
                return claim.task_id
            try:
                task_id = await self._manager.register_task(task)
            except BaseException:
                claim.release()
                raise
            claim.commit(task_id)
            return task_id

    async def RegisterDurableTasks(
        self, request: pb.RegisterDurableTasksRequest, context: _Context
    ) -> pb.RegisterDurableTasksResponse:
        """Register durable tasks with the manager's durable backend; ids are generated here."""
        if self._auth is not None:
            await check_auth(self._auth, context, _REGISTER_DURABLE, request)
        op = "register durable tasks"
        if not request.tasks:
            await _abort(context, StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"{op}: no tasks in the request"), op)
        cache = self._cache
        trace = _trace_context(context)
        built = []
        for index, message in enumerate(request.tasks):
            try:
                handler = _convert.handler_for(self._handlers, message.name)
                key, sig = _idempotency(cache, message)
                durable = _convert.build_durable_task(handler, message, uuid.uuid4())
                if trace:
                    durable.metadata = _with_trace(durable.metadata, trace)
                built.append((durable, key, sig))
            except Exception as exc:
                await _abort(context, exc, op, accepted=(), index=index)
        ids: list[uuid.UUID] = []
        for index, (task, key, sig) in enumerate(built):
            try:
                if cache is None or not key:
                    ids.append(await self._manager.register_durable_task(task))
                    continue
                claim = await cache.claim(key, sig)
                if claim.task_id is not None:
                    ids.append(claim.task_id)  # durable: the backend owns it; no existence check (go-worker)
                    continue
                try:
                    task_id = await self._manager.register_durable_task(task)
                except BaseException:
                    claim.release()
                    raise
                claim.commit(task_id)
                ids.append(task_id)
            except Exception as exc:
                await _abort(context, exc, op, accepted=ids, index=index)
        return pb.RegisterDurableTasksResponse(ids=[str(i) for i in ids])

    async def StreamResults(
        self, request: pb.StreamResultsRequest, context: _Context
    ) -> AsyncIterator[pb.StreamResultsResponse]:
        """Stream results (of the listed ids only, when any); see the module docstring."""
        if self._auth is not None:
            await check_auth(self._auth, context, _STREAM_RESULTS, request)
        try:
            wanted = list(dict.fromkeys(_convert.parse_id(raw) for raw in request.ids))
        except Exception as exc:
            await _abort(context, exc, "stream results")
        close = request.close_on_completion
        pending = set(wanted)
        self._streams += 1
        try:
            # Subscribe first, then look at finished tasks: a task finishing in between is seen by the
            # subscription and skipped there, so no result is lost and none is sent twice.
            with self._manager.subscribe_results(self._stream_buffer) as results:
                for task_id in wanted:
                    done = self._finished(task_id)
                    if done is not None:
                        pending.discard(task_id)
                        yield done
                if wanted and close and not pending:
                    return
                async for result in results:
                    task_id = result.task.id
                    if wanted:
                        if task_id not in pending:
                            continue
                        pending.discard(task_id)
                    yield pb.StreamResultsResponse(
                        id=str(task_id),
                        output=_convert.output_text(result.result),
                        error=_convert.error_text(result.error),
                    )
                    if wanted and close and not pending:
                        return
        finally:
            self._streams -= 1

    def _finished(self, task_id: uuid.UUID) -> pb.StreamResultsResponse | None:
        try:
            task = self._manager.get_task(task_id)
        except TaskNotFoundError:
            return None  # unknown here (yet): maybe a durable task another node runs; wait for it
        status = task.status
        if status is None or not status.is_terminal:
            return None
        return pb.StreamResultsResponse(
            id=str(task_id), output=_convert.output_text(task.result), error=_convert.error_text(task.error)
        )

    async def CancelTask(self, request: pb.CancelTaskRequest, context: _Context) -> pb.CancelTaskResponse:
        """Cancel a task; an empty response, also for a task that already finished."""
        if self._auth is not None:
            await check_auth(self._auth, context, _CANCEL_TASK, request)
        try:
            await self._manager.cancel_task(_convert.parse_id(request.id))
        except Exception as exc:
            await _abort(context, exc, "cancel task")
        return pb.CancelTaskResponse()

    async def GetTask(self, request: pb.GetTaskRequest, context: _Context) -> pb.GetTaskResponse:
        """A task's name, go-worker status name, output and error."""
        if self._auth is not None:
            await check_auth(self._auth, context, _GET_TASK, request)
        try:
            task_id = _convert.parse_id(request.id)
            task = self._manager.get_task(task_id)
        except Exception as exc:
            await _abort(context, exc, "get task")
        return pb.GetTaskResponse(
            id=str(task_id),
            name=task.name,
            status=task.status.go_name if task.status is not None else "Unknown",
            output=_convert.output_text(task.result),
            error=_convert.error_text(task.error),
        )


def _idempotency(cache: IdempotencyCache | None, message: pb.Task | pb.DurableTask) -> tuple[str, bytes]:
    """The task's idempotency key and signature (``""`` when it has none or keys are off).

    A key already used for another task raises here, before anything of the request is registered.
    """
    raw = message.idempotency_key
    key = raw.strip() if raw and cache is not None else ""
    if not key or cache is None:
        return "", b""
    # The message type is part of what a key binds to: a Task and a DurableTask never share one.
    sig = message.DESCRIPTOR.full_name.encode() + b":" + _convert.signature(message)
    cache.peek(key, sig)
    return key, sig


async def _abort(
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


def _trace_context(context: _Context) -> dict[str, str]:
    """The trace-context headers of this call ({} when the caller sent none)."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key in _TRACE_KEYS and isinstance(value, str):
            found[key] = value
    return found


def _with_trace(metadata: dict[str, str] | None, trace: dict[str, str]) -> dict[str, str]:
    merged = dict(trace)
    if metadata:
        merged.update(metadata)
    return merged
