"""A real TaskManager, a real grpc.aio server on a loopback port, and a real client channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import worker_grpc
from google.protobuf.wrappers_pb2 import StringValue
from worker_core import TaskContext, TaskManager
from worker_core.testing.binaries import register_marker, require_binaries_for
from worker_grpc import HandlerRegistry, WorkerClient, WorkerServiceServicer
from worker_grpc.messages import add_WorkerServiceServicer_to_server
from worker_grpc.payloads import CreateUserPayload, CreateUserResponse, SendEmailPayload

# Loopback calls must not go through an HTTP proxy configured in the environment.
NO_PROXY = (("grpc.enable_http_proxy", 0),)


class Unprintable(Exception):
    """An error whose ``str()`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Modules marked ``needs_binary(REDIS_SERVER)`` stop the run with one message when it is not installed."""
    require_binaries_for(session.items)


def channel(address: str) -> grpc.aio.Channel:
    """A plain grpc.aio channel to a test server."""
    return grpc.aio.insecure_channel(address, options=NO_PROXY)


@dataclass
class Gate:
    """Tasks of the ``wait`` handler block until the test opens the gate."""

    opened: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)


def make_handlers(gate: Gate) -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("create_user")
    async def create_user(ctx: TaskContext, payload: CreateUserPayload) -> CreateUserResponse:
        return CreateUserResponse(user_id=f"id-{payload.username}")

    @registry.handler("send_email")
    def send_email(ctx: TaskContext, payload: SendEmailPayload) -> str:  # plain: runs in the thread pool
        return f"sent to {payload.to}"

    @registry.handler("string")
    async def string(ctx: TaskContext, payload: StringValue | None) -> str:
        return "ok" if payload is None else payload.value

    @registry.handler("wait")
    async def wait(ctx: TaskContext, payload: StringValue | None) -> str:
        gate.started.set()
        await gate.opened.wait()
        return "released"

    @registry.handler("big")
    async def big(ctx: TaskContext, payload: StringValue | None) -> str:
        return "x" * 200_000  # a few of these fill a client's HTTP/2 flow-control window

    @registry.handler("huge")
    async def huge(ctx: TaskContext, payload: StringValue | None) -> str:
        return "y" * 5_000_000  # over gRPC's 4 MiB message limit, whole

    @registry.handler("fail")
    async def fail(ctx: TaskContext, payload: StringValue | None) -> None:
        if payload is not None and payload.value == "unprintable":
            raise Unprintable
        if payload is not None and payload.value == "huge":
            raise RuntimeError("x" * 10_000_000)  # over gRPC's 4 MiB message limit, whole
        raise RuntimeError("boom")

    return registry


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it is true; fail after a generous ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def manager() -> AsyncIterator[TaskManager]:
    tm = TaskManager(max_workers=4, max_tasks=100, tasks_per_second=None, retry_delay=0.01, max_retries=3)
    await tm.start()
    try:
        yield tm
    finally:
        await tm.stop_now()


@dataclass
class Served:
    server: grpc.aio.Server
    port: int
    servicer: WorkerServiceServicer | None = None
    clients: list[WorkerClient] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> WorkerClient:
        client = WorkerClient.connect(self.address, options=NO_PROXY, **kwargs)
        self.clients.append(client)
        return client


ServeFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(manager: TaskManager, gate: Gate) -> AsyncIterator[ServeFactory]:
    """``await serve(**kwargs)``: worker_grpc.serve() on 127.0.0.1:0 with the test handlers."""
    started: list[Served] = []

    async def start(**kwargs: Any) -> Served:
        tm = kwargs.pop("manager", manager)
        handlers = kwargs.pop("handlers", make_handlers(gate))
        server = await worker_grpc.serve(tm, handlers, "127.0.0.1:0", **kwargs)
        served = Served(server, worker_grpc.server_port(server), worker_grpc.server_servicer(server))
        started.append(served)
        return served

    try:
        yield start
    finally:
        for served in started:
            for client in served.clients:
                await client.close()
            await served.server.stop(None)


@pytest.fixture
async def served(serve: ServeFactory) -> Served:
    return await serve()


@pytest.fixture
def client(served: Served) -> WorkerClient:
    return served.client()


@pytest.fixture
async def servicer_server(manager: TaskManager, gate: Gate) -> AsyncIterator[Served]:
    """A server built by hand around a WorkerServiceServicer (so tests can look at the servicer)."""
    servicer = WorkerServiceServicer(manager, make_handlers(gate), stream_buffer=2)
    server = grpc.aio.server()
    add_WorkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    served = Served(server, port, servicer)
    try:
        yield served
    finally:
        for client in served.clients:
            await client.close()
        await server.stop(None)
