"""Identities: each token is a principal that sees only its own tasks; an authorizer grants more; keys per principal.

Each test here is one failure measured against a running server before identities existed: any valid token
could read, cancel and stream every other token's tasks, and replaying another token's idempotency key
returned that token's task id.
"""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from conftest import Gate, Served, ServeFactory, eventually
from google.protobuf.wrappers_pb2 import StringValue
from worker_core import Task, TaskContext, TaskManager, TaskStatus
from worker_grpc import (
    OWNER_KEY,
    AuthError,
    BearerTokenAuth,
    Principal,
    RemoteTaskNotFoundError,
    StatusError,
    TaskRequest,
    TaskResult,
    WorkerClient,
    grant_all,
)

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-ops": Principal("ops", frozenset({"admin"}))}


def as_(served: Served, token: str) -> WorkerClient:
    return served.client(metadata=[("authorization", f"Bearer {token}")])


@pytest.fixture
async def served(serve: ServeFactory) -> Served:
    return await serve(auth=BearerTokenAuth(TOKENS), authorize=grant_all(roles={"admin"}))


async def first_result(client: WorkerClient, ids: list[uuid.UUID]) -> TaskResult:
    async for result in client.stream_results(ids):
        return result
    raise AssertionError("stream ended without a result")


async def test_another_principal_cannot_get_or_cancel_a_task(served: Served, manager: TaskManager, gate: Gate) -> None:
    alice, bob = as_(served, "tok-alice"), as_(served, "tok-bob")
    task_id = await alice.register_task(TaskRequest("wait"))
    await gate.started.wait()
    with pytest.raises(RemoteTaskNotFoundError) as caught:
        await bob.get_task(task_id)
    assert caught.value.code is grpc.StatusCode.NOT_FOUND
    assert caught.value.details == f"get task: task with ID {task_id} not found"  # exactly as for an unknown id
    with pytest.raises(RemoteTaskNotFoundError):
        await bob.cancel_task(task_id)
    assert manager.get_task(task_id).status is TaskStatus.RUNNING  # bob's cancel changed nothing
    assert (await alice.get_task(task_id)).status == "Running"
    assert manager.get_task(task_id).metadata == {OWNER_KEY: "alice"}
    gate.opened.set()
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    assert (await alice.get_task(task_id)).output == "released"


async def test_streams_see_only_their_principals_results(served: Served, manager: TaskManager) -> None:
    alice, bob = as_(served, "tok-alice"), as_(served, "tok-bob")
    servicer = served.servicer
    assert servicer is not None
    manager.set_max_workers(0)  # nothing runs until every stream is open
    alice_id = await alice.register_task(TaskRequest("string", StringValue(value="alice's")))
    listed = asyncio.create_task(first_result(bob, [alice_id]))  # bob lists alice's id: never his
    everything = asyncio.create_task(first_result(bob, []))  # bob asks for every result: only his
    admin = asyncio.create_task(first_result(as_(served, "tok-ops"), []))  # granted every owner
    await eventually(lambda: servicer.active_streams == 3)
    bob_id = await bob.register_task(TaskRequest("string", StringValue(value="bob's")))
    manager.set_max_workers(1)  # one worker: alice's task finishes first, then bob's
    assert (await asyncio.wait_for(everything, 10)).id == bob_id  # alice's result, published first, never came
    assert (await asyncio.wait_for(admin, 10)).id == alice_id
    # Both tasks were handed out by now (bob's, the last, reached his stream): alice's went to the admin only,
    # bob's to his stream and the admin's. Had bob's stream listing alice's id been offered it, this would be 4.
    assert servicer.stream_metrics().results_offered == 3
    assert not listed.done()
    assert (await alice.get_task(alice_id)).output == "alice's"
    listed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listed


async def test_the_authorizer_grants_an_admin_every_task(served: Served, manager: TaskManager) -> None:
    alice, ops = as_(served, "tok-alice"), as_(served, "tok-ops")
    task_id = await alice.register_task(TaskRequest("string", StringValue(value="x")))
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    assert (await ops.get_task(task_id)).output == "x"
    results = [r async for r in ops.stream_results([task_id], close_on_completion=True, rpc_timeout=10)]
    assert [r.id for r in results] == [task_id]
    await ops.cancel_task(task_id)  # allowed (and a finished task stays as it is)


async def test_tasks_registered_in_python_belong_to_no_token(served: Served, manager: TaskManager) -> None:
    async def local(ctx: TaskContext) -> str:
        return "local"

    task_id = await manager.register_task(Task(local, name="local"))
    with pytest.raises(RemoteTaskNotFoundError):
        await as_(served, "tok-alice").get_task(task_id)
    assert (await as_(served, "tok-ops").get_task(task_id)).name == "local"


async def test_a_client_cannot_claim_another_principal_through_metadata(served: Served, manager: TaskManager) -> None:
    bob = as_(served, "tok-bob")
    task_id = await bob.register_task(TaskRequest("string", metadata={OWNER_KEY: "alice", "tag": "t"}))
    assert manager.get_task(task_id).metadata == {OWNER_KEY: "bob", "tag": "t"}
    with pytest.raises(RemoteTaskNotFoundError):
        await as_(served, "tok-alice").get_task(task_id)


async def test_idempotency_keys_are_scoped_per_principal(served: Served, manager: TaskManager) -> None:
    alice, bob = as_(served, "tok-alice"), as_(served, "tok-bob")
    request = TaskRequest("string", StringValue(value="same"), idempotency_key="order-1")
    first = await alice.register_task(request)
    replayed = await bob.register_task(request)  # the same key and task from another principal
    assert replayed != first  # bob gets a task of his own, never alice's id
    assert manager.get_task(replayed).metadata == {OWNER_KEY: "bob"}
    assert await alice.register_task(request) == first
    assert await bob.register_task(request) == replayed
    assert manager.metrics().scheduled == 2


async def test_an_unknown_or_missing_token_is_unauthenticated(served: Served) -> None:
    for client in (served.client(), as_(served, "tok-mallory")):
        with pytest.raises(AuthError) as caught:
            await client.get_task(uuid.uuid4())
        assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED


async def test_tokens_without_names_are_distinct_principals(serve: ServeFactory, manager: TaskManager) -> None:
    served = await serve(auth=BearerTokenAuth(["one", "two"]))
    task_id = await as_(served, "one").register_task(TaskRequest("string"))
    with pytest.raises(RemoteTaskNotFoundError):
        await as_(served, "two").get_task(task_id)
    owner = (manager.get_task(task_id).metadata or {})[OWNER_KEY]
    assert owner.startswith("token:")
    assert "one" not in owner  # the name does not reveal the token


async def test_a_hook_returning_nothing_keeps_the_old_shared_view(serve: ServeFactory, manager: TaskManager) -> None:
    def legacy(context: object, method: str, request: object) -> None:
        return None  # accepts every call, names nobody: every caller is the anonymous principal

    served = await serve(auth=legacy)
    task_id = await served.client().register_task(TaskRequest("string"))
    assert manager.get_task(task_id).metadata is None  # nothing stamped for the anonymous principal
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    assert (await served.client().get_task(task_id)).status == "Completed"


async def test_a_failing_authorizer_refuses_and_the_server_keeps_serving(
    serve: ServeFactory, manager: TaskManager
) -> None:
    def broken(principal: Principal, method: str, owner: str) -> bool:
        raise RuntimeError("bug")

    served = await serve(auth=BearerTokenAuth(TOKENS), authorize=broken)
    task_id = await as_(served, "tok-alice").register_task(TaskRequest("string"))
    with pytest.raises(RemoteTaskNotFoundError):
        await as_(served, "tok-ops").get_task(task_id)
    assert (await as_(served, "tok-alice").get_task(task_id)).id == task_id


async def test_an_auth_hook_that_returns_something_else_is_permission_denied(serve: ServeFactory) -> None:
    served = await serve(auth=lambda context, method, request: 42)
    with pytest.raises(AuthError) as caught:
        await served.client().get_task(uuid.uuid4())
    assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED


def test_status_error_is_still_what_a_hook_raises() -> None:
    error = StatusError(grpc.StatusCode.UNAUTHENTICATED, "no")
    assert (error.code, error.details) == (grpc.StatusCode.UNAUTHENTICATED, "no")
