"""StreamResults over the wire: filter, close_on_completion, replay of finished tasks, disconnects, slow clients."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from conftest import Gate, Served, channel, eventually
from google.protobuf.wrappers_pb2 import StringValue
from worker_core import TaskManager, TaskStatus
from worker_core.errors import ERROR_TEXT_CHARS
from worker_grpc import TaskRequest, TaskResult, WorkerClient
from worker_grpc import messages as pb
from worker_grpc._convert import OUTPUT_TEXT_CHARS
from worker_grpc.payloads import CreateUserPayload


async def collect(client: WorkerClient, ids: list[uuid.UUID], results: list[TaskResult]) -> None:
    async for result in client.stream_results(ids, close_on_completion=True):
        results.append(result)


async def test_stream_without_ids_sends_every_result(servicer_server: Served, manager: TaskManager) -> None:
    client = servicer_server.client()
    servicer = servicer_server.servicer
    assert servicer is not None
    results: list[TaskResult] = []

    async def consume() -> None:
        async for result in client.stream_results():
            results.append(result)

    consumer = asyncio.create_task(consume())
    await eventually(lambda: servicer.active_streams == 1)
    ids = await client.register_tasks([TaskRequest("string", StringValue(value="a")), TaskRequest("fail")])
    await eventually(lambda: len(results) == 2)
    by_id = {r.id: r for r in results}
    assert (by_id[ids[0]].output, by_id[ids[0]].error, by_id[ids[0]].ok) == ("a", "", True)
    assert (by_id[ids[1]].output, by_id[ids[1]].error, by_id[ids[1]].ok) == ("", "boom", False)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer


async def test_ids_filter_and_close_on_completion(client: WorkerClient, manager: TaskManager, gate: Gate) -> None:
    fast, slow, other = await client.register_tasks(
        [TaskRequest("create_user", CreateUserPayload(username="f")), TaskRequest("wait"), TaskRequest("string")]
    )
    await eventually(lambda: manager.get_task(fast).status is TaskStatus.COMPLETED)
    results: list[TaskResult] = []
    stream = asyncio.create_task(collect(client, [fast, slow], results))
    await eventually(lambda: len(results) == 1)
    assert results[0].id == fast  # finished before the stream opened: sent first, not missed
    assert not stream.done()
    gate.opened.set()
    await asyncio.wait_for(stream, 10)  # ends by itself once both listed tasks reported
    assert [r.id for r in results] == [fast, slow]
    assert results[1].output == "released"
    assert other not in {r.id for r in results}


async def test_register_then_stream_never_misses_a_fast_task(client: WorkerClient, manager: TaskManager) -> None:
    # go-worker subscribes only when the stream opens, so a task that finished in between is lost.
    for _ in range(20):
        task_id = await client.register_task(TaskRequest("string", StringValue(value="quick")))
        results = [r async for r in client.stream_results([task_id], close_on_completion=True)]
        assert [(r.id, r.output) for r in results] == [(task_id, "quick")]


async def test_each_result_is_sent_once_even_when_listed_twice(client: WorkerClient, manager: TaskManager) -> None:
    task_id = await client.register_task(TaskRequest("string"))
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    results = [r async for r in client.stream_results([task_id, str(task_id).upper()], close_on_completion=True)]
    assert [r.id for r in results] == [task_id]


async def test_a_client_that_goes_away_is_noticed_without_a_new_result(servicer_server: Served) -> None:
    servicer = servicer_server.servicer
    assert servicer is not None
    async with channel(servicer_server.address) as chan:
        call = pb.WorkerServiceStub(chan).StreamResults(pb.StreamResultsRequest())
        await eventually(lambda: servicer.active_streams == 1)
        call.cancel()
        # No task runs, so no result could wake the stream up: the disconnect itself must end it.
        await eventually(lambda: servicer.active_streams == 0)
    client = servicer_server.client()
    await eventually(lambda: servicer.active_streams == 0)

    async def first() -> TaskResult | None:
        async for result in client.stream_results():
            return result
        return None

    stream = asyncio.create_task(first())
    await eventually(lambda: servicer.active_streams == 1)
    await client.close()  # closing the channel is going away too
    await eventually(lambda: servicer.active_streams == 0)
    stream.cancel()
    with pytest.raises((asyncio.CancelledError, Exception)):
        await stream


async def test_a_slow_client_never_blocks_the_manager(servicer_server: Served, manager: TaskManager) -> None:
    servicer = servicer_server.servicer  # its stream buffer holds 2 results
    assert servicer is not None
    client = servicer_server.client()
    async with channel(servicer_server.address) as chan:
        call = pb.WorkerServiceStub(chan).StreamResults(pb.StreamResultsRequest())
        await eventually(lambda: servicer.active_streams == 1)  # subscribed; the client reads nothing now
        ids = []
        for _ in range(6):
            ids += await client.register_tasks([TaskRequest("big")] * 10)
        await asyncio.wait_for(manager.wait(), 20)  # the manager finished everything meanwhile
        assert all(manager.get_task(i).status is TaskStatus.COMPLETED for i in ids)
        assert servicer.stream_metrics().results_dropped > 0  # what the slow client lost is counted
        assert manager.metrics().results_dropped == 0  # the server's one subscription kept up with the manager
        received = 0
        while received < 3:  # and the client still gets what was buffered for it
            message = await call.read()
            assert isinstance(message, pb.StreamResultsResponse)
            assert message.output == "x" * 200_000
            received += 1
        call.cancel()


async def test_stream_ends_when_the_manager_stops(client: WorkerClient, manager: TaskManager) -> None:
    results: list[TaskResult] = []

    async def consume() -> None:
        async for result in client.stream_results():
            results.append(result)

    consumer = asyncio.create_task(consume())
    task_id = await client.register_task(TaskRequest("string"))
    await eventually(lambda: manager.get_task(task_id).status is TaskStatus.COMPLETED)
    await manager.stop_now()
    await asyncio.wait_for(consumer, 10)  # ended cleanly (status OK), no error raised


async def test_an_unprintable_or_huge_error_is_sent_as_bounded_text(client: WorkerClient) -> None:
    """A task error whose str() raises broke the stream; a 10 MB message was over gRPC's message limit."""
    ids = await client.register_tasks(
        [TaskRequest("fail", StringValue(value="unprintable")), TaskRequest("fail", StringValue(value="huge"))]
    )
    results: list[TaskResult] = []
    await asyncio.wait_for(collect(client, ids, results), 10)
    by_id = {r.id: r.error for r in results}
    assert by_id[ids[0]] == "<unprintable Unprintable: str() raised RuntimeError>"
    assert by_id[ids[1]].startswith("x" * ERROR_TEXT_CHARS + "... [")
    assert (await client.get_task(ids[0])).error == by_id[ids[0]]


async def test_a_huge_result_is_sent_as_bounded_text(client: WorkerClient) -> None:
    """A 5 MB result made GetTask and StreamResults fail: the whole text was over gRPC's 4 MiB message limit."""
    [task_id] = await client.register_tasks([TaskRequest("huge")])
    results: list[TaskResult] = []
    await asyncio.wait_for(collect(client, [task_id], results), 10)
    [result] = results
    assert result.output.startswith("y" * OUTPUT_TEXT_CHARS + "... [")
    assert result.output.endswith(f"[{5_000_000 - OUTPUT_TEXT_CHARS} more characters]")
    assert (await client.get_task(task_id)).output == result.output
