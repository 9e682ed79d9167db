"""W3C trace context sent as gRPC call metadata reaches the registered tasks' metadata (client -> gRPC -> worker)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import ServeFactory, channel
from test_durable import durable_registry, packed_email
from worker_core import TaskManager
from worker_core.testing import InMemoryDurableBackend
from worker_grpc import messages as pb

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_traceparent_of_the_call_is_stored_with_each_in_memory_task(
    serve: ServeFactory, manager: TaskManager
) -> None:
    served = await serve()
    async with channel(served.address) as chan:
        stub = pb.WorkerServiceStub(chan)
        response = await stub.RegisterTasks(
            pb.RegisterTasksRequest(tasks=[pb.Task(name="string"), pb.Task(name="string", metadata={"k": "v"})]),
            metadata=(("traceparent", TRACEPARENT), ("tracestate", "vendor=1"), ("other", "ignored")),
        )
    for raw in response.ids:
        metadata = manager.get_task(uuid.UUID(raw)).metadata or {}
        assert metadata["traceparent"] == TRACEPARENT
        assert metadata["tracestate"] == "vendor=1"
        assert "other" not in metadata
    assert (manager.get_task(uuid.UUID(response.ids[1])).metadata or {})["k"] == "v"


async def test_a_task_without_call_trace_context_gets_none(serve: ServeFactory, manager: TaskManager) -> None:
    served = await serve()
    async with channel(served.address) as chan:
        stub = pb.WorkerServiceStub(chan)
        response = await stub.RegisterTasks(pb.RegisterTasksRequest(tasks=[pb.Task(name="string")]))
    assert "traceparent" not in (manager.get_task(uuid.UUID(response.ids[0])).metadata or {})


@pytest.fixture
async def producer() -> AsyncIterator[tuple[TaskManager, InMemoryDurableBackend]]:
    """A durable manager that is never started: it only enqueues, so the stored record can be read back."""
    backend = InMemoryDurableBackend()
    tm = TaskManager(max_workers=1, durable_backend=backend, durable_handlers=durable_registry().handlers())
    yield tm, backend
    await tm.stop_now()


async def test_traceparent_of_the_call_is_stored_with_each_durable_task(
    serve: ServeFactory, producer: tuple[TaskManager, InMemoryDurableBackend]
) -> None:
    tm, backend = producer
    served = await serve(manager=tm)
    async with channel(served.address) as chan:
        response = await pb.WorkerServiceStub(chan).RegisterDurableTasks(
            pb.RegisterDurableTasksRequest(tasks=[pb.DurableTask(name="send_email", payload=packed_email())]),
            metadata=(("traceparent", TRACEPARENT),),
        )
    state = backend.get(uuid.UUID(response.ids[0]))
    assert state is not None
    assert (state.task.metadata or {})["traceparent"] == TRACEPARENT
