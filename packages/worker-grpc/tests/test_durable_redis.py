"""RegisterDurableTasks on a real redis-server (started here on a free loopback port, stopped by pid).

Measured before: ``RegisterDurableTasks`` registered one task at a time (one Redis round trip each) although
the backend has a batch path. Now a request is one ``register_durable_tasks`` call: one script call per
500 tasks, with go-worker's partial acceptance (the status of the first failed task; every stored task
accepted and run) and idempotency keys per principal.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from conftest import Served, ServeFactory, eventually
from redis.asyncio import Redis
from worker_core import TaskContext, TaskManager
from worker_core.durable import TypedDurableRegistry
from worker_grpc import (
    OWNER_KEY,
    BearerTokenAuth,
    DurableTaskRequest,
    HandlerRegistry,
    RemoteHandlerNotFoundError,
    RemoteTaskNotFoundError,
    TaskResult,
    WorkerClient,
)
from worker_grpc.payloads import CreateUserPayload, SendEmailPayload, SendEmailResponse
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin
from worker_redis.testing import REDIS_SERVER, RedisServer, redis_server

pytestmark = pytest.mark.needs_binary(REDIS_SERVER)


@pytest.fixture(scope="module")
def redis_srv() -> Iterator[RedisServer]:
    """A server of this module's own, so that its command counters see no other test's traffic."""
    with redis_server() as srv:
        yield srv


@pytest.fixture
async def raw(redis_srv: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_srv.url)
    yield client
    await client.aclose()


async def script_calls(client: Redis) -> int:
    stats: dict[str, Any] = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


sent: list[str] = []


def durable_registry() -> TypedDurableRegistry:
    registry = TypedDurableRegistry()

    @registry.handler("send_email")
    async def send_email(ctx: TaskContext, payload: SendEmailPayload) -> SendEmailResponse:
        sent.append(payload.to)
        return SendEmailResponse(message_id=f"msg-{payload.to}")

    return registry


@pytest.fixture
async def backend(redis_srv: RedisServer) -> AsyncIterator[RedisDurableBackend]:
    made = RedisDurableBackend.from_url(redis_srv.url, prefix=f"t-{uuid.uuid4().hex[:10]}")
    yield made
    await made.aclose()


@pytest.fixture
async def redis_manager(backend: RedisDurableBackend) -> AsyncIterator[TaskManager]:
    sent.clear()
    tm = TaskManager(
        max_workers=8,
        max_tasks=1000,
        tasks_per_second=None,
        max_retries=3,
        durable_backend=backend,
        durable_handlers=durable_registry().handlers(),
        durable_poll_interval=0.01,
        durable_batch_size=100,
    )
    await tm.start()
    try:
        yield tm
    finally:
        await tm.stop_now()


@pytest.fixture
async def served(serve: ServeFactory, redis_manager: TaskManager) -> Served:
    handlers: dict[str, Any] = dict(durable_registry().handlers())
    extra = HandlerRegistry()
    extra.add("create_user", CreateUserPayload, lambda ctx, p: None)  # a gRPC handler the manager cannot run
    handlers.update(extra.handlers())
    return await serve(manager=redis_manager, handlers=handlers, auth=BearerTokenAuth({"a": "alice", "b": "bob"}))


def as_(served: Served, token: str) -> WorkerClient:
    return served.client(metadata=[("authorization", f"Bearer {token}")])


def email(to: str, *, key: str = "") -> DurableTaskRequest:
    return DurableTaskRequest("send_email", SendEmailPayload(to=to, subject="hi"), idempotency_key=key)


async def test_a_request_of_100_durable_tasks_is_one_script_call(
    served: Served, raw: Redis, redis_manager: TaskManager
) -> None:
    alice = as_(served, "a")
    await alice.register_durable_task(email("warm@example.com"))  # connects and loads the script
    await eventually(lambda: "warm@example.com" in sent, within=20)
    redis_manager.set_max_workers(0)  # no dequeue scripts while counting
    before = await script_calls(raw)
    ids = await alice.register_durable_tasks([email(f"u{i}@example.com") for i in range(100)])
    after = await script_calls(raw)
    # One enqueue script call, not 100 (a lease poll already on its way when the workers went to 0 may land in
    # the window too: nothing else runs a script here).
    assert 1 <= after - before <= 2
    assert len(set(ids)) == 100
    redis_manager.set_max_workers(8)
    await eventually(lambda: len(sent) == 101, within=30)
    assert sorted(sent) == sorted(["warm@example.com", *(f"u{i}@example.com" for i in range(100))])


async def test_a_task_the_manager_rejects_is_reported_and_the_others_are_accepted_and_run(
    served: Served, redis_manager: TaskManager
) -> None:
    with pytest.raises(RemoteHandlerNotFoundError) as caught:
        await as_(served, "a").register_durable_tasks(
            [email("x@example.com"), DurableTaskRequest("create_user", CreateUserPayload(username="u")),
             email("y@example.com")]
        )  # fmt: skip
    error = caught.value
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.failed_index == 1
    assert len(error.accepted_ids) == 2  # the first and the third: stored in the same batch
    await eventually(lambda: sorted(sent) == ["x@example.com", "y@example.com"], within=20)


async def test_durable_idempotency_keys_are_per_principal(
    served: Served, redis_manager: TaskManager, backend: RedisDurableBackend, raw: Redis
) -> None:
    alice, bob = as_(served, "a"), as_(served, "b")
    request = email("same@example.com", key="welcome:same")
    first = await alice.register_durable_task(request)
    replayed = await bob.register_durable_task(request)
    assert replayed != first  # bob's replay never returns alice's task id
    assert await alice.register_durable_task(request) == first
    twice = await bob.register_durable_tasks([email("t@example.com", key="k2"), email("t@example.com", key="k2")])
    assert twice[0] == twice[1]  # the same key twice in one request: stored once
    await eventually(lambda: len(sent) == 3, within=20)
    assert sorted(sent) == ["same@example.com", "same@example.com", "t@example.com"]


async def test_a_durable_task_belongs_to_its_principal_on_the_node_that_runs_it(
    served: Served, redis_manager: TaskManager
) -> None:
    alice, bob = as_(served, "a"), as_(served, "b")
    task_id = await alice.register_durable_task(email("owned@example.com"))
    results = [r async for r in alice.stream_results([task_id], close_on_completion=True, rpc_timeout=20)]
    assert [r.id for r in results] == [task_id]
    assert (redis_manager.get_task(task_id).metadata or {})[OWNER_KEY] == "alice"  # travelled through Redis
    with pytest.raises(RemoteTaskNotFoundError):
        await bob.get_task(task_id)
    assert (await alice.get_task(task_id)).status == "Completed"


async def test_stream_results_and_get_task_of_a_task_replayed_after_it_failed_here_follow_the_new_run(
    serve: ServeFactory, redis_srv: RedisServer
) -> None:
    """The node that ran a durable task and saw it fail keeps its FAILED record: after a DLQ replay, a
    StreamResults for it waits for the new run (the result store says how it ended) instead of replaying the
    old failure, and GetTask answers Queued, then the new outcome."""
    fixed = False
    registry = TypedDurableRegistry()

    @registry.handler("send_email")
    async def send_email(ctx: TaskContext, payload: SendEmailPayload) -> SendEmailResponse:
        if not fixed:
            raise ConnectionRefusedError("relay down")
        return SendEmailResponse(message_id=f"msg-{payload.to}")

    prefix = f"t-{uuid.uuid4().hex[:10]}"
    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    tm = TaskManager(durable_backend=backend, durable_handlers=registry.handlers(), durable_poll_interval=0.01)
    async with tm, RedisAdmin.from_url(redis_srv.url, prefix=prefix) as admin:
        client = (await serve(manager=tm, handlers=dict(registry.handlers()))).client()
        task_id = await client.register_durable_task(email("ada@example.com"))
        (failed,) = [r async for r in client.stream_results([task_id], close_on_completion=True, rpc_timeout=20)]
        assert "relay down" in failed.error
        await admin.pause()  # the replayed task is not leased until resumed
        fixed = True
        assert (await admin.replay_dlq_ids([str(task_id)])).count == 1

        async def first_result() -> TaskResult:
            async for result in client.stream_results([task_id], close_on_completion=True, rpc_timeout=20):
                return result
            raise AssertionError("the stream closed without a result")

        waiting = asyncio.create_task(first_result())
        done, _ = await asyncio.wait([waiting], timeout=0.3)
        assert not done  # not the old failure: the task is queued again
        assert (await client.get_task(task_id)).status == "Queued"  # was the stale local "Failed"
        await admin.resume()
        result = await asyncio.wait_for(waiting, 20)
        assert (result.id, result.error) == (task_id, "")
        reply = await client.get_task(task_id)
        assert (reply.status, reply.output) == ("Completed", 'message_id: "msg-ada@example.com"')
    await backend.aclose()
