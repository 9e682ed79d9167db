"""RegisterDurableTasks over the wire, against a TaskManager with the in-memory durable backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from conftest import ServeFactory, eventually
from google.protobuf.any_pb2 import Any as AnyMessage
from worker_core import DurableTaskType, RetentionPolicy, TaskContext, TaskManager, TaskStatus
from worker_core.durable import DurableTask, DurableTaskLease, TypedDurableRegistry
from worker_core.errors import BackendUnavailableError
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend
from worker_grpc import (
    DurableTaskRequest,
    HandlerRegistry,
    RemoteHandlerNotFoundError,
    RemoteTaskExistsError,
    RpcError,
    ServiceUnavailableError,
    TaskRequest,
    WorkerClient,
)
from worker_grpc import messages as pb
from worker_grpc.payloads import CreateUserPayload, SendEmailPayload, SendEmailResponse


class CountingBackend(ForwardingBackend[InMemoryDurableBackend]):
    """The real in-memory backend behind a counter of enqueues; it can fail the n-th one or enqueue twice."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.enqueued = 0
        self.fail_at: int | None = None
        self.twice = False

    async def enqueue(self, task: DurableTask) -> None:
        self.enqueued += 1
        if self.enqueued == self.fail_at:
            raise BackendUnavailableError("store unreachable")
        await self.inner.enqueue(task)
        if self.twice:
            await self.inner.enqueue(task)  # the backend's own duplicate check answers

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        await self.inner.release(leases)

    async def wait_for_work(self, max_wait: float) -> None:
        await self.inner.wait_for_work(max_wait)

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        self.inner.configure_queues(default_queue, weights)

    def __len__(self) -> int:
        return len(self.inner)


def durable_registry() -> TypedDurableRegistry:
    registry = TypedDurableRegistry()

    @registry.handler("send_email")
    async def send_email(ctx: TaskContext, payload: SendEmailPayload) -> SendEmailResponse:
        return SendEmailResponse(message_id=f"msg-{payload.to}")

    return registry


@pytest.fixture
def backend() -> CountingBackend:
    return CountingBackend()


@pytest.fixture
async def durable_manager(backend: CountingBackend) -> AsyncIterator[TaskManager]:
    tm = TaskManager(
        max_workers=2,
        max_tasks=100,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers=durable_registry().handlers(),
    )
    await tm.start()
    try:
        yield tm
    finally:
        await tm.stop_now()


@pytest.fixture
async def client(serve: ServeFactory, durable_manager: TaskManager) -> WorkerClient:
    # One registry serves the manager (runs the tasks) and the server (decodes the payloads); a gRPC-only
    # handler ("create_user") shows what happens when the manager has no durable handler of that name.
    grpc_handlers: dict[str, Any] = dict(durable_registry().handlers())
    extra = HandlerRegistry()
    extra.add("create_user", CreateUserPayload, lambda ctx, p: None)
    grpc_handlers.update(extra.handlers())
    return (await serve(manager=durable_manager, handlers=grpc_handlers)).client()


def email(to: str = "ops@example.com", *, idempotency_key: str = "", queue: str = "") -> DurableTaskRequest:
    return DurableTaskRequest(
        "send_email", SendEmailPayload(to=to, subject="hi"), idempotency_key=idempotency_key, queue=queue, weight=2
    )


def _known(manager: TaskManager, task_id: uuid.UUID) -> bool:
    try:
        manager.get_task(task_id)
    except LookupError:
        return False
    return True


def packed_email() -> AnyMessage:
    value = AnyMessage()
    value.Pack(SendEmailPayload(to="x@example.com"))
    return value


async def test_durable_task_runs_and_its_result_is_streamed(client: WorkerClient, durable_manager: TaskManager) -> None:
    task_id = await client.register_durable_task(email(queue="email"))
    results = [r async for r in client.stream_results([task_id], close_on_completion=True, rpc_timeout=20)]
    assert [(r.id, r.output, r.error) for r in results] == [(task_id, 'message_id: "msg-ops@example.com"', "")]
    info = await client.get_task(task_id)
    assert (info.name, info.status) == ("send_email", "Completed")


async def test_durable_idempotency_key_reuse(client: WorkerClient, backend: CountingBackend) -> None:
    request = email(idempotency_key="durable:send_email:ops@example.com")
    first = await client.register_durable_task(request)
    second = await client.register_durable_task(request)
    assert first == second
    assert backend.enqueued == 1


async def test_duplicate_durable_task_is_already_exists(client: WorkerClient, backend: CountingBackend) -> None:
    backend.twice = True
    with pytest.raises(RemoteTaskExistsError) as caught:
        await client.register_durable_task(email())
    assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert "already" in caught.value.details


@pytest.mark.parametrize(
    ("task", "code"),
    [
        (pb.DurableTask(name="send_email"), grpc.StatusCode.INVALID_ARGUMENT),  # the payload is required
        (pb.DurableTask(name="nope"), grpc.StatusCode.NOT_FOUND),
        (pb.DurableTask(name="send_email", payload=AnyMessage(value=b"x")), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.DurableTask(name="send_email", payload=packed_email(), metadata={"weight": "abc"}),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.DurableTask(name="send_email", payload=packed_email(), retries=-1), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["missing-payload", "unknown-handler", "wrong-any", "bad-weight", "negative-retries"],
)
async def test_bad_durable_input_enqueues_nothing(
    client: WorkerClient, backend: CountingBackend, task: pb.DurableTask, code: grpc.StatusCode
) -> None:
    good = email().to_proto()
    with pytest.raises(RpcError) as caught:
        await client.register_durable_tasks([good, task])
    assert caught.value.code is code
    assert (caught.value.accepted_ids, caught.value.failed_index) == ((), 1)
    assert backend.enqueued == 0
    assert isinstance(await client.register_durable_task(email()), uuid.UUID)  # still serving


async def test_grpc_handler_without_a_durable_handler_is_not_found(
    client: WorkerClient, backend: CountingBackend
) -> None:
    with pytest.raises(RemoteHandlerNotFoundError):
        await client.register_durable_task(DurableTaskRequest("create_user", CreateUserPayload(username="u")))
    assert len(backend) == 0


async def test_in_memory_rpc_on_a_durable_manager_is_failed_precondition(client: WorkerClient) -> None:
    with pytest.raises(RpcError) as caught:
        await client.register_task(TaskRequest("send_email", SendEmailPayload(to="x")))
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION


async def test_backend_failure_mid_request_reports_the_accepted_tasks(
    client: WorkerClient, backend: CountingBackend, durable_manager: TaskManager
) -> None:
    backend.fail_at = 3
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.register_durable_tasks([email(f"u{i}@example.com") for i in range(4)])
    error = caught.value
    assert error.code is grpc.StatusCode.UNAVAILABLE
    # The whole request goes to the manager in one call: the task that failed is reported, every other one
    # was stored and is accepted (in request order), not only those before it.
    assert (len(error.accepted_ids), error.failed_index) == (3, 2)
    accepted = error.accepted_ids
    assert len(backend.inner) + sum(1 for t in accepted if _known(durable_manager, t)) >= 3

    def all_completed() -> bool:  # accepted means accepted: they run
        try:
            return all(durable_manager.get_task(t).status is TaskStatus.COMPLETED for t in accepted)
        except LookupError:
            return False  # not leased yet

    await eventually(all_completed)


async def test_get_task_reads_a_finished_durable_task_from_the_result_store(serve: ServeFactory) -> None:
    """Once this node's retention dropped the task, GetTask answers from the backend's result store."""
    tm = TaskManager(
        max_workers=1,
        tasks_per_second=None,
        durable_backend=InMemoryDurableBackend(),
        durable_handlers=durable_registry().handlers(),
    )
    tm.set_retention_policy(RetentionPolicy(max_entries=1))
    await tm.start()
    try:
        client = (await serve(manager=tm, handlers=durable_registry().handlers())).client()
        first = await client.register_durable_task(email("first@example.com"))
        await client.register_durable_task(email("second@example.com"))
        await eventually(lambda: not _known(tm, first))  # run, then evicted here once the second finished
        info = await client.get_task(first)
        assert (info.name, info.status, info.output) == (
            "send_email",
            "Completed",
            'message_id: "msg-first@example.com"',
        )
        with pytest.raises(RpcError) as missing:
            await client.get_task(uuid.uuid4())
        assert missing.value.code is grpc.StatusCode.NOT_FOUND
    finally:
        await tm.stop_now()


async def test_stream_results_of_a_durable_task_another_node_runs(serve: ServeFactory) -> None:
    """The node serving gRPC holds only the declaration; another node runs the task; the stream still ends."""
    backend = InMemoryDurableBackend()
    declared = DurableTaskType("send_email", SendEmailPayload)
    front = TaskManager(tasks_per_second=None, durable_backend=backend, durable_handlers=[declared])
    worker = TaskManager(tasks_per_second=None, durable_backend=backend, durable_handlers=durable_registry().handlers())
    await front.start()
    try:
        client = (await serve(manager=front, handlers=durable_registry().handlers())).client()
        task_id = await client.register_durable_task(email("far@example.com"))
        assert not _known(front, task_id)  # this node never leases it
        async with worker:
            results = [r async for r in client.stream_results([task_id], close_on_completion=True, rpc_timeout=20)]
        assert [(r.id, r.output, r.error) for r in results] == [(task_id, 'message_id: "msg-far@example.com"', "")]
        info = await client.get_task(task_id)
        assert (info.name, info.status) == ("send_email", "Completed")
    finally:
        await front.stop_now()
