"""Bad input over the wire: each gets its exact status code, nothing half-done is lost, the server keeps serving."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import Gate, Served, ServeFactory, eventually
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.protobuf.wrappers_pb2 import StringValue
from worker_core import TaskManager, TaskStatus
from worker_grpc import (
    AuthError,
    BearerTokenAuth,
    DurableTaskRequest,
    InvalidRequestError,
    RemoteHandlerNotFoundError,
    RemoteManagerStoppedError,
    RemoteQueueFullError,
    RpcError,
    TaskRequest,
    WorkerClient,
)
from worker_grpc import messages as pb
from worker_grpc.payloads import CreateUserPayload, SendEmailPayload


async def assert_still_serving(client: WorkerClient, manager: TaskManager) -> None:
    task_id = await client.register_task(TaskRequest("create_user", CreateUserPayload(username="ok")))
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)


def packed(message: Any) -> AnyMessage:
    value = AnyMessage()
    value.Pack(message)
    return value


async def test_unknown_handler_is_not_found_and_registers_nothing(client: WorkerClient, manager: TaskManager) -> None:
    good = TaskRequest("create_user", CreateUserPayload(username="a"))
    with pytest.raises(RemoteHandlerNotFoundError) as caught:
        await client.register_tasks([good, good, TaskRequest("no_such_handler")])
    error = caught.value
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert "no handler registered for 'no_such_handler'" in error.details
    # The request is checked as a whole before anything is registered.
    assert (error.accepted_ids, error.failed_index) == ((), 2)
    assert manager.get_tasks() == []
    await assert_still_serving(client, manager)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (packed(SendEmailPayload(to="x")), "expected worker.v1.CreateUserPayload, got 'worker.v1.SendEmailPayload'"),
        (AnyMessage(type_url="type.googleapis.com/worker.v1.CreateUserPayload", value=b"\x0a\xff"), "cannot decode"),
        (AnyMessage(), "expected worker.v1.CreateUserPayload, got ''"),
    ],
    ids=["any-of-the-wrong-type", "corrupt-bytes", "empty-any"],
)
async def test_bad_payload_is_invalid_argument(
    client: WorkerClient, manager: TaskManager, payload: AnyMessage, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.register_tasks([pb.Task(name="create_user", payload=payload)])
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details
    assert manager.get_tasks() == []
    await assert_still_serving(client, manager)


@pytest.mark.parametrize("weight", ["abc", "-1", "0", "1.5", "99999999999"])
async def test_bad_weight_is_invalid_argument(client: WorkerClient, manager: TaskManager, weight: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.register_tasks([pb.Task(name="string", metadata={"weight": weight})])
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid queue weight" in caught.value.details
    await assert_still_serving(client, manager)


@pytest.mark.parametrize(
    "task",
    [pb.Task(name="string", retries=-1), pb.Task(name="string", retry_delay=Duration(seconds=-1))],
    ids=["negative-retries", "negative-retry-delay"],
)
async def test_bad_numbers_are_invalid_argument(client: WorkerClient, manager: TaskManager, task: pb.Task) -> None:
    with pytest.raises(InvalidRequestError):
        await client.register_tasks([task])
    await assert_still_serving(client, manager)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", "g" * 36])
async def test_invalid_uuid_is_invalid_argument_everywhere(
    client: WorkerClient, manager: TaskManager, bad_id: str
) -> None:
    for call in (client.get_task, client.cancel_task):
        with pytest.raises(InvalidRequestError) as caught:
            await call(bad_id)
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidRequestError):
        async for _ in client.stream_results([bad_id]):
            pass
    await assert_still_serving(client, manager)


async def test_empty_task_list_is_invalid_argument(client: WorkerClient, manager: TaskManager) -> None:
    with pytest.raises(InvalidRequestError, match="no tasks in the request"):
        await client.register_tasks([])
    with pytest.raises(InvalidRequestError, match="no tasks in the request"):
        await client.register_durable_tasks([])
    await assert_still_serving(client, manager)


async def test_request_over_the_size_limit_is_resource_exhausted(serve: ServeFactory, manager: TaskManager) -> None:
    client = (await serve(max_message_bytes=16 * 1024)).client()
    with pytest.raises(RpcError) as caught:
        await client.register_tasks([TaskRequest("string", StringValue(value="x" * 32 * 1024))])
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not isinstance(caught.value, RemoteQueueFullError)  # the request never reached the manager
    assert manager.get_tasks() == []
    await assert_still_serving(client, manager)


@pytest.fixture
async def small_manager() -> AsyncIterator[TaskManager]:
    tm = TaskManager(max_workers=1, max_tasks=3, tasks_per_second=None)
    await tm.start()
    try:
        yield tm
    finally:
        await tm.stop_now()


async def test_queue_full_mid_request_reports_the_accepted_tasks(
    serve: ServeFactory, small_manager: TaskManager, gate: Gate
) -> None:
    client = (await serve(manager=small_manager)).client()
    blocker = await client.register_task(TaskRequest("wait"))
    await gate.started.wait()  # the only worker is busy; 3 more tasks fit in the queue
    requests = [TaskRequest("string", StringValue(value=str(i)), idempotency_key=f"k{i}") for i in range(5)]
    with pytest.raises(RemoteQueueFullError) as caught:
        await client.register_tasks(requests)
    error = caught.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.failed_index == 3
    assert len(error.accepted_ids) == 3
    assert {t.id for t in small_manager.get_tasks()} == {blocker, *error.accepted_ids}
    gate.opened.set()
    await eventually(
        lambda: all(small_manager.get_task(t).status is TaskStatus.COMPLETED for t in error.accepted_ids)
    )  # accepted means accepted: they all run
    assert [small_manager.get_task(t).result for t in error.accepted_ids] == ["0", "1", "2"]
    # Retrying the whole request: the accepted tasks keep their ids (idempotency keys), and the refused ones
    # are registered now (a transient error is not cached).
    retried = await client.register_tasks(requests)
    assert retried[:3] == list(error.accepted_ids)
    assert len(set(retried)) == 5
    await eventually(lambda: all(small_manager.get_task(t).status is TaskStatus.COMPLETED for t in retried))
    assert [small_manager.get_task(t).result for t in retried] == ["0", "1", "2", "3", "4"]
    await assert_still_serving(client, small_manager)


async def test_stopped_manager_is_unavailable_and_lookups_still_work(
    client: WorkerClient, manager: TaskManager
) -> None:
    task_id = await client.register_task(TaskRequest("string"))
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    await manager.stop_now()
    with pytest.raises(RemoteManagerStoppedError) as caught:
        await client.register_task(TaskRequest("string"))
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.accepted_ids == ()
    assert (await client.get_task(task_id)).status == "Completed"


async def test_durable_rpc_without_a_durable_backend_is_failed_precondition(
    client: WorkerClient, manager: TaskManager
) -> None:
    with pytest.raises(RpcError) as caught:
        await client.register_durable_task(DurableTaskRequest("send_email", SendEmailPayload(to="x")))
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    await assert_still_serving(client, manager)


async def test_missing_and_wrong_credentials_are_unauthenticated(serve: ServeFactory, manager: TaskManager) -> None:
    served = await serve(auth=BearerTokenAuth({"s3cret"}))
    for metadata in ((), (("authorization", "Bearer nope"),), (("authorization", "Basic s3cret"),)):
        client = served.client(metadata=metadata)
        with pytest.raises(AuthError) as caught:
            await client.register_task(TaskRequest("string"))
        assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(AuthError):
            async for _ in client.stream_results():
                pass
    assert manager.get_tasks() == []
    await assert_still_serving(served.client(metadata=(("authorization", "Bearer s3cret"),)), manager)


@pytest.mark.parametrize("mode", ["raises", "returns-false", "aborts", "sets-code"])
async def test_auth_hook_outcomes(serve: ServeFactory, manager: TaskManager, mode: str) -> None:
    async def auth(context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any) -> bool:
        if mode == "raises":
            raise KeyError("secret detail")
        if mode == "aborts":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "aborted by hook")
        if mode == "sets-code":
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details("slow down")
            raise RuntimeError("rate limited")
        return False

    client = (await serve(auth=auth)).client()
    with pytest.raises(RpcError) as caught:
        await client.get_task(uuid.uuid4())
    expected = {
        "raises": (grpc.StatusCode.PERMISSION_DENIED, "unauthorized"),
        "returns-false": (grpc.StatusCode.PERMISSION_DENIED, "unauthorized"),
        "aborts": (grpc.StatusCode.UNAUTHENTICATED, "aborted by hook"),
        "sets-code": (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"),
    }[mode]
    assert (caught.value.code, caught.value.details) == expected


async def test_server_keeps_serving_other_clients_after_bad_input(served: Served, manager: TaskManager) -> None:
    bad, good = served.client(), served.client()
    for _ in range(3):
        with pytest.raises(InvalidRequestError):
            await bad.register_tasks([pb.Task(name="create_user", payload=AnyMessage(value=b"junk"))])
    await assert_still_serving(good, manager)
    await assert_still_serving(bad, manager)
