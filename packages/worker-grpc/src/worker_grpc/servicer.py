"""The WorkerService on ``grpc.aio``: a thin edge over a :class:`worker_core.TaskManager`.

Semantics are go-worker's (the README's "Semantics and guarantees") with its bugs fixed:

- Tasks belong to the manager, never to the RPC: the RPC only hands them over, so a client that goes
  away, or a deadline, does not cancel a registered task.
- A registration request is validated as a whole before anything is registered (handler, payload,
  weight, retries, idempotency conflicts): a bad task rejects the request and registers nothing. A
  failure while registering (queue full, manager stopping) stops at that task; the tasks before it
  stay registered and their ids are in the ``worker-accepted-ids`` trailing metadata.
- ``StreamResults`` first sends the results of listed ids that already finished, then follows new
  results through the servicer's fan-out (:mod:`worker_grpc.streams`): one core subscription, an index
  by task id, bounded buffers and stream limits. A client that goes away ends the stream at once:
  grpc.aio cancels the handler, which unregisters the stream.
- Every call runs as a principal (what the auth hook returned) and sees only that principal's tasks,
  plus what the authorizer grants (:mod:`worker_grpc.access`); idempotency keys are per principal.
- ``RegisterDurableTasks`` stores the request's tasks with one ``register_durable_tasks`` call (the
  backend's batch path when it has one: one Redis round trip per batch).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, final

import grpc
from worker_core import Task, TaskStatus
from worker_core.durable import DurableTask
from worker_core.durable.outcomes import ResultStoreBackend
from worker_core.errors import ConfigurationError, TaskNotFoundError

from . import _convert
from ._durable_batch import store_durable
from ._proto.worker.v1 import worker_pb2 as pb
from ._proto.worker.v1 import worker_pb2_grpc as pb_grpc
from ._requests import RequestKeys, abort, trace_context, with_trace
from .access import OWNER_KEY, Access, Authorizer, stamped
from .auth import ANONYMOUS, AuthHook, Principal, check_auth
from .errors import StatusError
from .handlers import Handlers, resolve_handlers
from .idempotency import IdempotencyCache
from .streams import ResultFanout, StreamLimits, StreamMetrics, TooManyStreamsError

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
        auth: Called at the start of every RPC (see :mod:`worker_grpc.auth`); it returns the caller's
            principal. ``None``: every caller is the anonymous principal.
        authorize: Grants a principal access to tasks of other principals (see :mod:`worker_grpc.access`);
            ``None``: each principal sees its own tasks only.
        idempotency: The idempotency cache (a bounded :class:`IdempotencyCache` by default);
            ``None`` turns idempotency keys off.
        stream_buffer: Results buffered per ``StreamResults`` call without ids before the drop policy applies
            (the ``buffer`` of the default :class:`~worker_grpc.StreamLimits`).
        stream_limits: Every stream bound at once (``stream_buffer`` is then ignored).
    """

    def __init__(
        self,
        manager: TaskManager,
        handlers: Handlers,
        *,
        auth: AuthHook | None = None,
        authorize: Authorizer | None = None,
        idempotency: IdempotencyCache | _Default | None = _DEFAULT_CACHE,
        stream_buffer: int = 256,
        stream_limits: StreamLimits | None = None,
    ) -> None:
        if stream_buffer < 1:
            raise ValueError("stream_buffer must be >= 1")
        self._manager = manager
        self._handlers = resolve_handlers(handlers)
        self._auth = auth
        self._access = Access(authorize)
        self._cache = IdempotencyCache() if isinstance(idempotency, _Default) else idempotency
        limits = stream_limits if stream_limits is not None else StreamLimits(buffer=stream_buffer)
        self._fanout = ResultFanout(manager, self._access, limits, _STREAM_RESULTS)

    @property
    def active_streams(self) -> int:
        """``StreamResults`` calls being served right now."""
        return self._fanout.active

    def stream_metrics(self) -> StreamMetrics:
        """Open streams, streams refused by a limit, and results lost to full stream buffers."""
        return self._fanout.metrics()

    async def _principal(self, context: _Context, method: str, request: Any) -> Principal:
        auth = self._auth
        if auth is None:
            return ANONYMOUS
        return await check_auth(auth, context, method, request)

    async def RegisterTasks(self, request: pb.RegisterTasksRequest, context: _Context) -> pb.RegisterTasksResponse:
        """Register in-memory tasks; the response lists their ids in request order."""
        principal = await self._principal(context, _REGISTER_TASKS, request)
        op = "register tasks"
        if not request.tasks:
            await abort(context, StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"{op}: no tasks in the request"), op)
        cache = self._cache
        scope = principal.name
        trace = trace_context(context)
        built = []
        keys = RequestKeys(cache, scope)
        for index, message in enumerate(request.tasks):
            try:
                handler = self._handlers.get(message.name) or _convert.handler_for(self._handlers, message.name)
                key, sig = keys.check(message)
                task = _convert.build_task(handler, message)
                task.metadata = stamped(with_trace(task.metadata, trace) if trace else task.metadata, principal)
                built.append((task, key, sig))
            except Exception as exc:
                await abort(context, exc, op, accepted=(), index=index)
        ids: list[uuid.UUID] = []
        for index, (task, key, sig) in enumerate(built):
            try:
                if key:
                    ids.append(await self._register_keyed(task, key, sig, scope))
                else:
                    ids.append(await self._manager.register_task(task))
            except Exception as exc:
                await abort(context, exc, op, accepted=ids, index=index)
        return pb.RegisterTasksResponse(ids=[str(i) for i in ids])

    async def _register_keyed(self, task: Task[Any], key: str, sig: bytes, scope: str) -> uuid.UUID:
        cache = self._cache
        assert cache is not None
        while True:
            claim = await cache.claim(key, sig, scope=scope)
            if claim.task_id is not None:
                try:
                    self._manager.get_task(claim.task_id)
                except TaskNotFoundError:
                    cache.forget(key, scope=scope)  # pruned by retention: register it anew (go-worker does the same)
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
        """Register durable tasks with the manager's durable backend in one batch; ids are generated here."""
        principal = await self._principal(context, _REGISTER_DURABLE, request)
        op = "register durable tasks"
        if not request.tasks:
            await abort(context, StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"{op}: no tasks in the request"), op)
        trace = trace_context(context)
        built: list[tuple[DurableTask, str, bytes]] = []
        keys = RequestKeys(self._cache, principal.name)
        for index, message in enumerate(request.tasks):
            try:
                handler = _convert.handler_for(self._handlers, message.name)
                key, sig = keys.check(message)
                durable = _convert.build_durable_task(handler, message, None)
                metadata = with_trace(durable.metadata, trace) if trace else durable.metadata
                durable.metadata = stamped(metadata, principal)
                built.append((durable, key, sig))
            except Exception as exc:
                await abort(context, exc, op, accepted=(), index=index)
        ids, errors = await store_durable(self._manager, self._cache, built, principal.name)
        if errors:
            first = min(errors)
            accepted = [task_id for task_id in ids if task_id is not None]
            await abort(context, errors[first], op, accepted=accepted, index=first)
        return pb.RegisterDurableTasksResponse(ids=[str(i) for i in ids])

    async def StreamResults(
        self, request: pb.StreamResultsRequest, context: _Context
    ) -> AsyncIterator[pb.StreamResultsResponse]:
        """Stream results (of the listed ids only, when any); see the module docstring."""
        principal = await self._principal(context, _STREAM_RESULTS, request)
        op = "stream results"
        try:
            wanted = list(dict.fromkeys(_convert.parse_id(raw) for raw in request.ids))
        except Exception as exc:
            await abort(context, exc, op)
        try:
            stream = self._fanout.open(principal, wanted)
        except TooManyStreamsError as exc:
            await abort(context, StatusError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)), op)
        close = request.close_on_completion
        pending = set(wanted)
        try:
            # Registered first, then look at finished tasks: a task finishing in between reaches the stream
            # and is skipped there, so no result is lost and none is sent twice.
            for task_id in wanted:
                done = self._finished(task_id, principal)
                if done is not None:
                    pending.discard(task_id)
                    yield done
            if wanted and close and not pending:
                return
            elsewhere = [task_id for task_id in pending if not self._running_here(task_id)]
            if elsewhere and self._stores_results():
                # Tasks this node does not run now (durable tasks another node runs, or that finished here but
                # may run again: a DLQ replay): their outcomes come from the backend's result store, raced
                # against this node's own results.
                async for response in self._merged(stream, principal, pending, elsewhere, close):
                    yield response
                return
            while (task := await stream.next()) is not None:
                task_id = task.id
                if wanted:
                    if task_id not in pending:
                        continue
                    pending.discard(task_id)
                yield pb.StreamResultsResponse(
                    id=str(task_id),
                    output=_convert.output_text(task.result),
                    error=_convert.error_text(task.error),
                )
                if wanted and close and not pending:
                    return
        finally:
            self._fanout.close(stream)

    def _running_here(self, task_id: uuid.UUID) -> bool:
        try:
            status = self._manager.get_task(task_id).status
        except TaskNotFoundError:
            return False
        return status is None or not status.is_terminal

    def _stores_results(self) -> bool:
        manager = self._manager
        return manager.durable and isinstance(manager.durable_backend(), ResultStoreBackend)

    async def _merged(
        self,
        stream: Any,
        principal: Principal,
        pending: set[uuid.UUID],
        elsewhere: Sequence[uuid.UUID],
        close: bool,
    ) -> AsyncIterator[pb.StreamResultsResponse]:
        """This node's results for ``pending`` ids, and stored outcomes of the ``elsewhere`` ones, as they come."""
        out: asyncio.Queue[pb.StreamResultsResponse | None] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            feeders = [group.create_task(self._feed_local(stream, out))]
            feeders += [group.create_task(self._feed_stored(task_id, principal, out)) for task_id in elsewhere]
            try:
                while (response := await out.get()) is not None:  # None: the manager stopped
                    task_id = uuid.UUID(response.id)
                    if task_id not in pending:
                        continue
                    pending.discard(task_id)
                    yield response
                    if close and not pending:
                        return
            finally:
                for feeder in feeders:
                    feeder.cancel()

    @staticmethod
    async def _feed_local(stream: Any, out: asyncio.Queue[pb.StreamResultsResponse | None]) -> None:
        while (task := await stream.next()) is not None:
            out.put_nowait(
                pb.StreamResultsResponse(
                    id=str(task.id), output=_convert.output_text(task.result), error=_convert.error_text(task.error)
                )
            )
        out.put_nowait(None)

    async def _feed_stored(
        self, task_id: uuid.UUID, principal: Principal, out: asyncio.Queue[pb.StreamResultsResponse | None]
    ) -> None:
        outcome = await self._manager.durable_outcome(task_id, wait=None)
        if outcome is None or not self._access.allows(principal, _STREAM_RESULTS, outcome.metadata.get(OWNER_KEY, "")):
            return  # another principal's task: as if unknown
        output, error = _convert.stored_text(outcome)
        out.put_nowait(pb.StreamResultsResponse(id=str(task_id), output=output, error=error))

    def _visible(self, task_id: uuid.UUID, principal: Principal, method: str) -> Task[Any]:
        """The task, if ``principal`` may call ``method`` on it; another principal's task is "not found"."""
        task = self._manager.get_task(task_id)
        if not self._access.sees(principal, method, task):
            raise TaskNotFoundError(f"task with ID {task_id} not found")
        return task

    async def _stored(self, task_id: uuid.UUID, principal: Principal) -> pb.GetTaskResponse | None:
        """A finished durable task from the result store (another node ran it), if ``principal`` may see it."""
        try:
            outcome = await self._manager.durable_outcome(task_id)
        except ConfigurationError:  # not durable, or a backend that stores no results
            return None
        if outcome is None or not self._access.allows(principal, _GET_TASK, outcome.metadata.get(OWNER_KEY, "")):
            return None
        output, error = _convert.stored_text(outcome)
        return pb.GetTaskResponse(
            id=str(task_id), name=outcome.handler, status=outcome.status.go_name, output=output, error=error
        )

    def _finished(self, task_id: uuid.UUID, principal: Principal) -> pb.StreamResultsResponse | None:
        try:
            task = self._visible(task_id, principal, _STREAM_RESULTS)
        except TaskNotFoundError:
            return None  # unknown here (yet): maybe a durable task another node runs; wait for it
        status = task.status
        if status is None or not status.is_terminal:
            return None
        if not self._manager.handle(task_id).done():
            return None  # a durable task the result store answers for: it may have been replayed since
        return pb.StreamResultsResponse(
            id=str(task_id), output=_convert.output_text(task.result), error=_convert.error_text(task.error)
        )

    async def CancelTask(self, request: pb.CancelTaskRequest, context: _Context) -> pb.CancelTaskResponse:
        """Cancel a task; an empty response, also for a task that already finished."""
        principal = await self._principal(context, _CANCEL_TASK, request)
        try:
            task_id = _convert.parse_id(request.id)
            self._visible(task_id, principal, _CANCEL_TASK)
            await self._manager.cancel_task(task_id)
        except Exception as exc:
            await abort(context, exc, "cancel task")
        return pb.CancelTaskResponse()

    async def GetTask(self, request: pb.GetTaskRequest, context: _Context) -> pb.GetTaskResponse:
        """A task's name, go-worker status name, output and error."""
        principal = await self._principal(context, _GET_TASK, request)
        try:
            task_id = _convert.parse_id(request.id)
            try:
                task = self._visible(task_id, principal, _GET_TASK)
            except TaskNotFoundError:
                stored = await self._stored(task_id, principal)
                if stored is None:
                    raise
                return stored
            status = task.status
            if task.durable and status is not None and status.is_terminal:
                # How it ended here may be stale: the task may have been replayed (and run again elsewhere) since.
                stored = await self._stored(task_id, principal)
                if stored is not None:
                    return stored
                if not self._manager.handle(task_id).done():  # replayed, not settled again yet
                    return pb.GetTaskResponse(id=str(task_id), name=task.name, status=TaskStatus.QUEUED.go_name)
        except Exception as exc:
            await abort(context, exc, "get task")
        return pb.GetTaskResponse(
            id=str(task_id),
            name=task.name,
            status=task.status.go_name if task.status is not None else "Unknown",
            output=_convert.output_text(task.result),
            error=_convert.error_text(task.error),
        )
