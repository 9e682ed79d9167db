"""The result fan-out: streams that did not ask for a task cost nothing, limits answer RESOURCE_EXHAUSTED,
slow streams are bounded (the drop policy applies and is counted), and thousands of idle filtered streams
barely change how long a batch of 100 tasks takes (the factor is reported, never asserted).

Measured before the fan-out existed: ~6,000 open ``StreamResults`` streams slowed a 100-task batch from
0.15 s to 1.9-4.2 s (every completion was appended to every stream and filtered after delivery), and nothing
bounded the streams of a server or of a caller.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import NO_PROXY, Gate, Served, ServeFactory, eventually
from google.protobuf.wrappers_pb2 import StringValue
from worker_core import DropPolicy, TaskManager
from worker_grpc import BearerTokenAuth, RpcError, StreamLimits, TaskRequest, WorkerClient
from worker_grpc import messages as pb

N_STREAMS = 3_000  # "thousands": enough to have made a 100-task batch several times slower before the fan-out
WAVE = 500  # grpc cancels calls beyond ~1,000-3,000 not yet picked up by the server: open them in waves


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def open_streams(
    chan: grpc.aio.Channel, count: int, *, metadata: tuple[tuple[str, str], ...] = (), ids: bool = True
) -> list[grpc.aio.UnaryStreamCall[pb.StreamResultsRequest, pb.StreamResultsResponse]]:
    stub = pb.WorkerServiceStub(chan)
    calls = []
    for _ in range(count):
        request = pb.StreamResultsRequest(ids=[str(uuid.uuid4())] if ids else [])
        calls.append(stub.StreamResults(request, metadata=metadata))
    return calls


async def batch_seconds(client: WorkerClient, manager: TaskManager) -> float:
    started = time.perf_counter()
    await client.register_tasks([TaskRequest("string", StringValue(value="b"))] * 100)
    await asyncio.wait_for(manager.wait(), 60)
    return time.perf_counter() - started


@pytest.fixture
async def many(serve: ServeFactory) -> Served:
    return await serve(stream_limits=StreamLimits(max_streams_per_principal=N_STREAMS))


@pytest.fixture
async def aio_channel(many: Served) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(many.address, options=NO_PROXY) as chan:
        yield chan


@pytest.mark.timeout(120)
async def test_thousands_of_idle_filtered_streams_are_not_offered_other_tasks(
    many: Served, aio_channel: grpc.aio.Channel, manager: TaskManager, request: pytest.FixtureRequest
) -> None:
    served = many
    servicer = served.servicer
    assert servicer is not None
    client = served.client()
    await batch_seconds(client, manager)  # warm up the channel and the manager
    without = min([await batch_seconds(client, manager) for _ in range(3)])
    calls: list[grpc.aio.UnaryStreamCall[pb.StreamResultsRequest, pb.StreamResultsResponse]] = []
    while len(calls) < N_STREAMS:
        calls += await open_streams(aio_channel, WAVE)
        opened = len(calls)
        await eventually(lambda: servicer.active_streams == opened, within=60)  # noqa: B023 - awaited right here
    offered = servicer.stream_metrics().results_offered
    with_streams = min([await batch_seconds(client, manager) for _ in range(3)])
    assert servicer.stream_metrics().results_offered == offered  # 300 tasks finished; no stream was offered one
    assert servicer.active_streams == N_STREAMS
    factor = with_streams / without
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = f"100-task batch: {without * 1000:.1f} ms alone, {with_streams * 1000:.1f} ms with {N_STREAMS} filtered"
    line += f" streams open (x{factor:.2f})"
    if reporter is not None:
        reporter.write_line(f"\n{line}")
    request.node.user_properties.append(("batch_time_factor", round(factor, 3)))
    for call in calls:
        call.cancel()
    await eventually(lambda: servicer.active_streams == 0, within=60)


async def test_a_filtered_stream_is_offered_only_its_own_ids(
    served: Served, client: WorkerClient, manager: TaskManager
) -> None:
    servicer = served.servicer
    assert servicer is not None
    manager.set_max_workers(0)
    ids = await client.register_tasks([TaskRequest("string")] * 10)
    results = asyncio.create_task(collect(client, ids[:2]))
    await eventually(lambda: servicer.active_streams == 1)
    manager.set_max_workers(4)
    assert sorted(r for r in await asyncio.wait_for(results, 10)) == sorted(ids[:2])
    await asyncio.wait_for(manager.wait(), 10)
    assert servicer.stream_metrics().results_offered == 2  # not 10: the other eight finished unseen by it


async def collect(client: WorkerClient, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    return [r.id async for r in client.stream_results(ids, close_on_completion=True)]


async def test_streams_per_server_are_limited(serve: ServeFactory, manager: TaskManager) -> None:
    served = await serve(stream_limits=StreamLimits(max_streams=3))
    servicer = served.servicer
    assert servicer is not None
    async with grpc.aio.insecure_channel(served.address, options=NO_PROXY) as chan:
        calls = await open_streams(chan, 3)
        await eventually(lambda: servicer.active_streams == 3)
        (extra,) = await open_streams(chan, 1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await extra.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "3 streams open on this server" in (caught.value.details() or "")
        assert servicer.stream_metrics().refused == 1
        calls[0].cancel()
        await eventually(lambda: servicer.active_streams == 2)
        (again,) = await open_streams(chan, 1)  # a slot came free: accepted again
        await eventually(lambda: servicer.active_streams == 3)
        for call in (*calls[1:], again):
            call.cancel()


async def test_streams_per_principal_are_limited(serve: ServeFactory, manager: TaskManager) -> None:
    auth = BearerTokenAuth({"a": "alice", "b": "bob"})
    served = await serve(auth=auth, stream_limits=StreamLimits(max_streams_per_principal=2))
    servicer = served.servicer
    assert servicer is not None
    async with grpc.aio.insecure_channel(served.address, options=NO_PROXY) as chan:
        alice = await open_streams(chan, 2, metadata=bearer("a"))
        await eventually(lambda: servicer.active_streams == 2)
        (third,) = await open_streams(chan, 1, metadata=bearer("a"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await third.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 streams open for this caller" in (caught.value.details() or "")
        bob = await open_streams(chan, 2, metadata=bearer("b"))  # another principal has its own allowance
        await eventually(lambda: servicer.active_streams == 4)
        for call in (*alice, *bob):
            call.cancel()


async def test_too_many_ids_in_one_stream_is_resource_exhausted(serve: ServeFactory) -> None:
    served = await serve(stream_limits=StreamLimits(max_ids=3))
    with pytest.raises(RpcError) as caught:
        async for _ in served.client().stream_results([uuid.uuid4() for _ in range(4)]):
            pass
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 3 per stream" in caught.value.details


@pytest.mark.parametrize("policy", [DropPolicy.DROP_NEWEST, DropPolicy.DROP_OLDEST])
async def test_a_slow_stream_holds_at_most_its_buffer_and_counts_the_rest(
    serve: ServeFactory, manager: TaskManager, policy: DropPolicy
) -> None:
    served = await serve(stream_limits=StreamLimits(buffer=4, drop_policy=policy))
    servicer = served.servicer
    assert servicer is not None
    async with grpc.aio.insecure_channel(served.address, options=NO_PROXY) as chan:
        call = pb.WorkerServiceStub(chan).StreamResults(pb.StreamResultsRequest())
        await eventually(lambda: servicer.active_streams == 1)
        client = served.client()
        # "big" results fill the client's flow-control window at once, so the server-side buffer fills up.
        ids = await client.register_tasks([TaskRequest("big")] * 40)
        await asyncio.wait_for(manager.wait(), 20)
        await eventually(lambda: servicer.stream_metrics().results_offered == 40)
        metrics = servicer.stream_metrics()
        assert metrics.results_dropped > 0
        assert manager.metrics().results_dropped == 0
        received: list[str] = []
        while len(received) < 40 - metrics.results_dropped:
            message = await call.read()
            assert isinstance(message, pb.StreamResultsResponse)
            received.append(message.id)
        assert set(received) <= {str(i) for i in ids}
        call.cancel()


def test_limits_are_validated() -> None:
    for bad in ({"max_streams": 0}, {"buffer": 0}, {"max_ids": -1}, {"max_streams_per_principal": True}):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            StreamLimits(**bad)


async def test_a_stream_ends_when_the_manager_stops_even_while_others_stay(
    served: Served, client: WorkerClient, manager: TaskManager, gate: Gate
) -> None:
    servicer = served.servicer
    assert servicer is not None
    consumers = [asyncio.create_task(collect(client, [uuid.uuid4()])) for _ in range(3)]
    await eventually(lambda: servicer.active_streams == 3)
    await manager.stop_now()
    done = await asyncio.wait_for(asyncio.gather(*consumers), 10)
    assert done == [[], [], []]  # ended cleanly (status OK), nothing sent
    await eventually(lambda: servicer.active_streams == 0)
