"""The WorkerService over a real loopback connection: go-worker's grpc_server and grpc_idempotency tests, and more."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from conftest import NO_PROXY, Gate, Served, ServeFactory, channel, eventually
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from worker_core import RetentionPolicy, TaskManager, TaskStatus
from worker_grpc import (
    AuthError,
    InvalidRequestError,
    RemoteTaskExistsError,
    RemoteTaskNotFoundError,
    RpcError,
    StatusError,
    TaskRequest,
    WorkerClient,
)
from worker_grpc import messages as pb
from worker_grpc.payloads import CreateUserPayload, SendEmailPayload


async def finished(manager: TaskManager, task_id: uuid.UUID) -> None:
    await eventually(lambda: bool((s := manager.get_task(task_id).status) and s.is_terminal))


async def test_registered_task_runs_and_get_task_reports_it(client: WorkerClient, manager: TaskManager) -> None:
    (task_id,) = await client.register_tasks([TaskRequest("create_user", CreateUserPayload(username="alice"))])
    await finished(manager, task_id)
    info = await client.get_task(task_id)
    assert info.id == task_id
    assert info.name == "create_user"
    assert info.status == "Completed"
    assert info.done
    assert info.output == 'user_id: "id-alice"'
    assert info.error == ""


async def test_plain_handler_and_failing_handler(client: WorkerClient, manager: TaskManager) -> None:
    ok, bad = await client.register_tasks(
        [TaskRequest("send_email", SendEmailPayload(to="ops@example.com")), TaskRequest("fail")]
    )
    await finished(manager, ok)
    await finished(manager, bad)
    assert (await client.get_task(ok)).output == "sent to ops@example.com"
    failed = await client.get_task(bad)
    assert (failed.status, failed.error, failed.output) == ("Failed", "boom", "")


async def test_status_names_are_go_workers(client: WorkerClient, manager: TaskManager, gate: Gate) -> None:
    running = [await client.register_task(TaskRequest("wait")) for _ in range(4)]  # the 4 workers are busy
    queued = await client.register_task(TaskRequest("wait"))
    await eventually(lambda: all(manager.get_task(i).status is TaskStatus.RUNNING for i in running))
    assert (await client.get_task(running[0])).status == "Running"
    assert (await client.get_task(queued)).status == "Queued"
    await client.cancel_task(queued)
    await finished(manager, queued)
    assert (await client.get_task(queued)).status == "Cancelled"
    gate.opened.set()
    await finished(manager, running[0])
    assert (await client.get_task(running[0])).status == "Completed"


async def test_tasks_outlive_the_rpc_and_the_channel(served: Served, manager: TaskManager, gate: Gate) -> None:
    # go-worker binds the task to the RPC's context, which grpc cancels when the RPC ends .
    client = WorkerClient.connect(served.address, options=NO_PROXY)
    running = await client.register_task(TaskRequest("wait"))
    await gate.started.wait()
    queued = [await client.register_task(TaskRequest("wait")) for _ in range(5)]
    await client.close()  # the connection is gone: nothing may be cancelled
    assert manager.get_task(running).status is TaskStatus.RUNNING
    gate.opened.set()
    for task_id in [running, *queued]:
        await finished(manager, task_id)
        assert manager.get_task(task_id).status is TaskStatus.COMPLETED
        assert manager.get_task(task_id).result == "released"


async def test_task_fields_and_metadata_reach_the_task(client: WorkerClient, manager: TaskManager) -> None:
    task_id = await client.register_task(
        TaskRequest(
            "string",
            StringValue(value="hi"),
            description="d",
            priority=7,
            retries=2,
            retry_delay=0.25,
            queue=" emails ",
            weight=3,
            correlation_id="corr-1",
            metadata={"source": "api"},
        )
    )
    task = manager.get_task(task_id)
    assert (task.name, task.description, task.priority, task.retries, task.retry_delay) == ("string", "d", 7, 2, 0.25)
    assert (task.queue, task.weight) == ("emails", 3)
    assert task.metadata == {"source": "api", "correlation_id": "corr-1"}  # queue and weight became fields
    await finished(manager, task_id)
    assert (await client.get_task(task_id)).output == "hi"


async def test_cancel_task_not_found(client: WorkerClient) -> None:
    with pytest.raises(RemoteTaskNotFoundError) as caught:
        await client.cancel_task(uuid.uuid4())
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


async def test_cancel_task_invalid_id(client: WorkerClient) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.cancel_task("not-a-uuid")
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_get_task_not_found(client: WorkerClient) -> None:
    with pytest.raises(RemoteTaskNotFoundError) as caught:
        await client.get_task(uuid.uuid4())
    assert caught.value.code is grpc.StatusCode.NOT_FOUND


async def test_get_task_invalid_id(client: WorkerClient) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.get_task("1234")
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_of_a_finished_task_is_ok(client: WorkerClient, manager: TaskManager) -> None:
    task_id = await client.register_task(TaskRequest("string"))
    await finished(manager, task_id)
    await client.cancel_task(task_id)
    assert (await client.get_task(task_id)).status == "Completed"


async def test_auth_hook_gets_method_and_request_and_its_status_propagates(serve: ServeFactory) -> None:
    seen: list[tuple[str, type[Any]]] = []

    def auth(context: Any, method: str, request: Any) -> None:
        seen.append((method, type(request)))
        raise StatusError(grpc.StatusCode.UNAUTHENTICATED, "no token")

    client = (await serve(auth=auth)).client()
    with pytest.raises(AuthError) as caught:
        await client.get_task(uuid.uuid4())
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details == "no token"
    assert seen == [("/worker.v1.WorkerService/GetTask", pb.GetTaskRequest)]


async def test_idempotency_key_reuse(client: WorkerClient, manager: TaskManager) -> None:
    request = TaskRequest(
        "string",
        description="once",
        priority=2,
        correlation_id="c-1",
        idempotency_key="create:once",
        metadata={"source": "test"},
    )
    first = await client.register_task(request)
    second = await client.register_task(request)
    assert first == second
    assert [t.id for t in manager.get_tasks()] == [first]


async def test_idempotency_key_conflict(client: WorkerClient, manager: TaskManager) -> None:
    await client.register_task(TaskRequest("string", idempotency_key="k"))
    with pytest.raises(RemoteTaskExistsError) as caught:
        await client.register_task(TaskRequest("create_user", idempotency_key="k"))
    assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS
    assert len(manager.get_tasks()) == 1


async def test_idempotency_inside_one_request(client: WorkerClient, manager: TaskManager) -> None:
    a, b = await client.register_tasks([TaskRequest("string", idempotency_key="k")] * 2)
    assert a == b
    assert len(manager.get_tasks()) == 1


async def test_a_go_style_protobuf_client_works(served: Served, manager: TaskManager) -> None:
    payload = AnyMessage()
    payload.Pack(CreateUserPayload(username="newuser", email="newuser@example.com"))
    async with channel(served.address) as chan:
        stub = pb.WorkerServiceStub(chan)
        response = await stub.RegisterTasks(
            pb.RegisterTasksRequest(
                tasks=[pb.Task(name="create_user", payload=payload, metadata={"source": "api_example"})]
            )
        )
        (task_id,) = response.ids
        assert str(uuid.UUID(task_id)) == task_id  # canonical lower-case UUID
        await finished(manager, uuid.UUID(task_id))
        got = await stub.GetTask(pb.GetTaskRequest(id=task_id))
        assert (got.id, got.name, got.status, got.output) == (
            task_id,
            "create_user",
            "Completed",
            'user_id: "id-newuser"',
        )


async def test_health_and_reflection(serve: ServeFactory) -> None:
    served = await serve(reflection="open")
    async with channel(served.address) as aio_channel:
        chan: Any = aio_channel  # the health and reflection stubs are typed for sync channels only
        health: Any = health_pb2_grpc.HealthStub(chan)
        for service in ("", "worker.v1.WorkerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(chan)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = set()
        async for reply in call:
            names = {s.name for s in reply.list_services_response.service}
            break
        call.cancel()
        assert "worker.v1.WorkerService" in names
        assert "grpc.health.v1.Health" in names


async def test_health_follows_the_manager(served: Served, manager: TaskManager) -> None:
    async with channel(served.address) as aio_channel:
        health: Any = health_pb2_grpc.HealthStub(aio_channel)  # typed for sync channels only
        request = health_pb2.HealthCheckRequest(service="worker.v1.WorkerService")
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING
        await manager.stop_now()
        assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        overall = health_pb2.HealthCheckRequest(service="")
        assert (await health.Check(overall)).status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_missing_payload_typed_handlers_get_an_empty_message_or_none(
    client: WorkerClient, manager: TaskManager
) -> None:
    empty, none = await client.register_tasks([TaskRequest("create_user"), TaskRequest("string")])
    await finished(manager, empty)
    await finished(manager, none)
    assert (await client.get_task(empty)).output == 'user_id: "id-"'  # CreateUserPayload(): username ""
    assert (await client.get_task(none)).output == "ok"  # annotated `StringValue | None`: called with None


async def test_a_closed_client_raises_a_worker_error(served: Served) -> None:
    client = WorkerClient.connect(served.address, options=NO_PROXY)
    await client.close()
    with pytest.raises(RpcError, match="cannot be used"):
        await client.get_task(uuid.uuid4())
    with pytest.raises(RpcError, match="cannot be used"):
        async for _ in client.stream_results():
            pass


async def test_concurrent_requests_with_one_key_register_once(served: Served, manager: TaskManager) -> None:
    clients = [served.client() for _ in range(4)]
    request = TaskRequest("string", idempotency_key="same")
    ids = await asyncio.gather(*(c.register_task(request) for c in clients for _ in range(5)))
    assert len(set(ids)) == 1
    assert [t.id for t in manager.get_tasks()] == [ids[0]]


async def test_a_key_whose_task_was_pruned_registers_it_anew(client: WorkerClient, manager: TaskManager) -> None:
    manager.set_retention_policy(RetentionPolicy(max_entries=1))
    request = TaskRequest("string", idempotency_key="pruned")
    first = await client.register_task(request)
    await finished(manager, first)
    other = await client.register_task(TaskRequest("string"))
    await finished(manager, other)
    await eventually(lambda: [t.id for t in manager.get_tasks()] == [other])  # the first one was evicted
    again = await client.register_task(request)
    assert again != first  # go-worker's rule: the key maps to a task the manager no longer knows
    assert again == await client.register_task(request)
