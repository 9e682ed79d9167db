"""worker-grpc on loopback: RegisterTasks (batches of 1 and 100), StreamResults, unary latency, vs a bare echo;
RegisterDurableTasks of 100 tasks on Redis, batched vs one enqueue per task; a 100-task batch with 5,000 idle
filtered streams open vs none.

The server runs in its own process (as in production: the client's work does not share its CPU); the
baseline is a bare ``grpc.aio`` service in a process of its own that answers raw bytes of the same sizes as
RegisterTasks (no protobuf, no TaskManager): what gRPC itself costs. The durable figures use a private
redis-server on a free port (started and stopped here). Run with ``nox -s bench -- bench/grpc.py`` or
``uv run python bench/grpc.py [--quick]``.
"""

from __future__ import annotations

import os
import sys

# This file is named grpc.py: keep its directory off sys.path, or `import grpc` would import this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import worker_grpc  # noqa: E402
from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402
from worker_core import TaskContext, TaskManager  # noqa: E402
from worker_core.durable import TypedDurableRegistry  # noqa: E402
from worker_core.testing import ForwardingBackend  # noqa: E402
from worker_grpc import messages as pb  # noqa: E402
from worker_redis import RedisDurableBackend  # noqa: E402
from worker_redis.testing import redis_server  # noqa: E402

ECHO_METHOD = "/bench.Echo/Echo"
CONCURRENCY = 32
IDLE_STREAMS = 5_000
STREAM_WAVE = 500  # grpc cancels new calls beyond ~1,000-3,000 the server has not picked up yet: open in waves
# Loopback calls must not go through an HTTP proxy configured in the environment.
NO_PROXY = (("grpc.enable_http_proxy", 0),)


def _one_task_request() -> pb.RegisterTasksRequest:
    payload = pb.Task(name="noop", metadata={"queue": "bench"})
    payload.payload.Pack(StringValue(value="x" * 32))
    return pb.RegisterTasksRequest(tasks=[payload])


async def _noop(ctx: TaskContext, payload: StringValue | None) -> None:
    return None


async def _answer_until_stop(conn: Connection, streams: Callable[[], int] = lambda: 0) -> None:
    """Answer "cpu" with this process's CPU seconds (all threads), "streams" with the open streams, until "stop".

    "gc-freeze" / "gc-unfreeze" (answered like "cpu") freeze and unfreeze the objects alive in the server.
    """
    loop = asyncio.get_running_loop()
    while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
        if command == "gc-freeze":  # move what is alive now out of the collector's reach (and back on "gc-unfreeze")
            gc.collect()
            gc.freeze()
        elif command == "gc-unfreeze":
            gc.unfreeze()
        conn.send(streams() if command == "streams" else time.process_time())


async def _serve_worker(conn: Connection) -> None:
    registry = worker_grpc.HandlerRegistry()
    registry.handler("noop")(_noop)
    limits = worker_grpc.StreamLimits(max_streams=2 * IDLE_STREAMS, max_streams_per_principal=2 * IDLE_STREAMS,
                                      buffer=1_000_000)  # fmt: skip
    async with TaskManager(max_workers=8, max_tasks=10_000_000, tasks_per_second=None) as manager:
        server = await worker_grpc.serve(manager, registry, "127.0.0.1:0", stream_limits=limits)
        servicer = worker_grpc.server_servicer(server)
        conn.send(worker_grpc.server_port(server))
        await _answer_until_stop(conn, lambda: servicer.active_streams)
        conn.send(manager.metrics().results_dropped + servicer.stream_metrics().results_dropped)
        await server.stop(None)
        await manager.stop_now()


def _durable_registry() -> TypedDurableRegistry:
    registry = TypedDurableRegistry()

    @registry.handler("noop")
    async def noop(ctx: TaskContext, payload: StringValue) -> None:
        return None

    return registry


async def _serve_durable(conn: Connection, redis_url: str, batched: bool) -> None:
    """A durable server on Redis; without ``batched`` its backend hides ``enqueue_many`` (one enqueue per task)."""
    prefix = f"bench-{'batch' if batched else 'each'}-{os.getpid()}"
    redis = RedisDurableBackend.from_url(redis_url, prefix=prefix)
    backend: Any = redis if batched else ForwardingBackend(redis)
    handlers = _durable_registry().handlers()
    async with TaskManager(
        max_workers=8, tasks_per_second=None, durable_backend=backend, durable_handlers=handlers
    ) as manager:
        manager.set_max_workers(0)  # registration only: nothing is leased while measuring
        server = await worker_grpc.serve(manager, handlers, "127.0.0.1:0")
        conn.send(worker_grpc.server_port(server))
        await _answer_until_stop(conn)
        conn.send(0)
        await server.stop(None)
        await manager.stop_now()
    await redis.aclose()


async def _serve_echo(conn: Connection) -> None:
    response = pb.RegisterTasksResponse(ids=["00000000-0000-4000-8000-000000000000"]).SerializeToString()

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return response

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn.send(port)
    await _answer_until_stop(conn)
    conn.send(0)
    await server.stop(None)


def _server_main(kind: str, conn: Connection, redis_url: str) -> None:
    if kind == "worker":
        asyncio.run(_serve_worker(conn))
    elif kind == "echo":
        asyncio.run(_serve_echo(conn))
    else:
        asyncio.run(_serve_durable(conn, redis_url, batched=kind == "durable-batch"))


class _Server:
    def __init__(self, kind: str, redis_url: str = "") -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_server_main, args=(kind, child, redis_url), daemon=True)
        self._proc.start()
        self.port: int = self._conn.recv()

    def cpu(self) -> float:
        self._conn.send("cpu")
        seconds: float = self._conn.recv()
        return seconds

    def streams(self) -> int:
        self._conn.send("streams")
        count: int = self._conn.recv()
        return count

    def command(self, name: str) -> None:
        self._conn.send(name)
        self._conn.recv()

    def stop(self) -> int:
        self._conn.send("stop")
        dropped: int = self._conn.recv()
        self._proc.join(10)
        return dropped


async def _latency(call: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    for _ in range(min(200, n)):
        await call()  # warm up
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


async def _rate(call: Callable[[], Awaitable[Any]], n: int, on_start: Callable[[], object] = lambda: None) -> float:
    """Calls per second with CONCURRENCY calls in flight (``on_start`` runs once the warm-up is done)."""
    per_worker = n // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    for _ in range(200):
        await call()
    on_start()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(CONCURRENCY):
            tg.create_task(worker())
    return per_worker * CONCURRENCY / (time.perf_counter() - start)


async def _stream_rate(stub: Any, batch: pb.RegisterTasksRequest, total: int) -> float:
    """Results/s seen by one StreamResults client while batches are registered."""
    call = stub.StreamResults(pb.StreamResultsRequest())
    wanted: set[str] = set()
    received = 0
    up = asyncio.Event()

    async def warm_up() -> None:  # until the stream has shown one result, it may not be subscribed yet
        while not up.is_set():
            await stub.RegisterTasks(pb.RegisterTasksRequest(tasks=batch.tasks[:1]))
            await asyncio.sleep(0.05)

    async def follow() -> None:
        nonlocal received
        while received < total:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            up.set()
            if isinstance(message, pb.StreamResultsResponse) and message.id in wanted:
                received += 1

    follower = asyncio.create_task(follow())
    await warm_up()
    start = time.perf_counter()
    for _ in range(total // len(batch.tasks)):
        wanted.update((await stub.RegisterTasks(batch)).ids)
    await asyncio.wait_for(follower, 120)
    elapsed = time.perf_counter() - start
    call.cancel()
    return received / elapsed


async def _bench(n: int, rounds: int) -> dict[str, float]:
    one = _one_task_request()
    hundred = pb.RegisterTasksRequest(tasks=list(one.tasks) * 100)
    raw = one.SerializeToString()
    echo_server, worker_server = _Server("echo"), _Server("worker")
    samples: dict[str, list[float]] = {}
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{echo_server.port}", options=NO_PROXY) as echo_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{worker_server.port}", options=NO_PROXY) as channel,
        ):
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = echo_channel.unary_unary(ECHO_METHOD)
            stub = pb.WorkerServiceStub(channel)
            get = pb.GetTaskRequest(id=(await stub.RegisterTasks(one)).ids[0])

            async def echo_call() -> Any:
                return await echo(raw)

            async def register_one() -> Any:
                return await stub.RegisterTasks(one)

            async def get_task() -> Any:
                return await stub.GetTask(get)

            # Interleaved rounds, medians: the machine's load drifts, and it drifts for both sides alike.
            for _ in range(rounds):
                for key, call, server in (
                    ("echo", echo_call, echo_server),
                    ("register1", register_one, worker_server),
                    ("get", get_task, worker_server),
                ):
                    if key == "get":  # a task of its own: the manager keeps 10,000 finished tasks by default
                        get.id = (await stub.RegisterTasks(one)).ids[0]
                    p50, p99 = await _latency(call, n // 4)
                    samples.setdefault(f"{key}_p50_us", []).append(p50)
                    samples.setdefault(f"{key}_p99_us", []).append(p99)
                    cpu = server.cpu()
                    samples.setdefault(f"{key}_rate", []).append(await _rate(call, n))
                    # Server CPU per call (all its threads): what the server side costs, whatever the load.
                    samples.setdefault(f"{key}_cpu_us", []).append((server.cpu() - cpu) / n * 1e6)

            async def register_hundred() -> Any:
                return await stub.RegisterTasks(hundred)

            batches = max(n // 50, CONCURRENCY * 4)
            samples["register100_rate"] = [await _rate(register_hundred, batches) * 100]
            samples["stream_rate"] = [await _stream_rate(stub, hundred, (n // 100) * 100)]
            samples.update(await _idle_streams(worker_server, register_hundred, batches))
    finally:
        echo_server.stop()
        dropped = worker_server.stop()
    out = {key: statistics.median(values) for key, values in samples.items()}
    out["stream_dropped"] = dropped
    return out


async def _measured(
    server: _Server, register: Callable[[], Awaitable[Any]], calls: int, per_call: int
) -> tuple[float, float]:
    """(tasks/s, server CPU us per task) of ``calls`` calls of ``per_call`` tasks each, after a warm-up."""
    started: list[float] = []
    rate = await _rate(register, calls, lambda: started.append(server.cpu())) * per_call
    return rate, (server.cpu() - started[0]) / (calls // CONCURRENCY * CONCURRENCY * per_call) * 1e6


async def _idle_streams(
    server: _Server, register_hundred: Callable[[], Awaitable[Any]], batches: int
) -> dict[str, list[float]]:
    """100-task batches with no stream, with IDLE_STREAMS filtered streams open (none interested), and none again.

    The streams come from a connection of their own (other clients, in production), not the one registering.
    """
    before = await _measured(server, register_hundred, batches, 100)
    options = (*NO_PROXY, ("grpc.use_local_subchannel_pool", 1))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        stub = pb.WorkerServiceStub(channel)
        calls: list[Any] = []
        base = server.streams()
        while len(calls) < IDLE_STREAMS:
            calls += [stub.StreamResults(pb.StreamResultsRequest(ids=[str(uuid.uuid4())])) for _ in range(STREAM_WAVE)]
            deadline = time.monotonic() + 60
            while server.streams() < base + len(calls):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {server.streams() - base} of {len(calls)} streams opened")
                await asyncio.sleep(0.01)
        during = await _measured(server, register_hundred, batches, 100)
        # The same, with the objects the open calls hold frozen out of the cyclic garbage collector's walks.
        server.command("gc-freeze")
        frozen = await _measured(server, register_hundred, batches, 100)
        server.command("gc-unfreeze")
        for call in calls:
            call.cancel()
        while server.streams() > base:  # noqa: ASYNC110 - the count lives in the server's process
            await asyncio.sleep(0.01)
    after = await _measured(server, register_hundred, batches, 100)
    return {
        "idle_none_rate": [statistics.mean((before[0], after[0]))],
        "idle_none_cpu_us": [statistics.mean((before[1], after[1]))],
        "idle_streams_rate": [during[0]],
        "idle_streams_cpu_us": [during[1]],
        "idle_frozen_rate": [frozen[0]],
        "idle_frozen_cpu_us": [frozen[1]],
    }


async def _durable(n: int, rounds: int) -> dict[str, float]:
    """RegisterDurableTasks of 100 tasks on one Redis: the batch path vs one enqueue per task, interleaved rounds.

    Registration only: the servers lease nothing (no worker), so running tasks does not share the CPUs.
    """
    hundred = pb.RegisterDurableTasksRequest()
    for _ in range(100):
        task = hundred.tasks.add(name="noop")
        task.payload.Pack(StringValue(value="x" * 32))
    samples: dict[str, list[float]] = {}
    with redis_server() as redis:
        servers = {kind: _Server(kind, redis.url) for kind in ("durable-each", "durable-batch")}
        try:
            for _ in range(rounds):
                for kind, server in servers.items():
                    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=NO_PROXY) as channel:
                        register = functools.partial(pb.WorkerServiceStub(channel).RegisterDurableTasks, hundred)
                        rate, cpu = await _measured(server, register, max(n // 100, CONCURRENCY * 2), 100)
                    samples.setdefault(kind, []).append(rate)
                    samples.setdefault(f"{kind}_cpu_us", []).append(cpu)
        finally:
            for server in servers.values():
                server.stop()
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls, one round (a smoke run)")
    args = parser.parse_args()
    n, rounds = (2_000, 1) if args.quick else (20_000, 3)
    r = asyncio.run(_bench(n, rounds))
    r.update(asyncio.run(_durable(n, rounds)))
    print(
        f"worker-grpc loopback benchmark: {n} calls per figure, {CONCURRENCY} in flight for rates,"
        f" median of {rounds} interleaved rounds"
    )
    rows = [
        ("bare grpc.aio echo (same sizes)", r["echo_rate"], "calls/s", "echo"),
        ("RegisterTasks, batch of 1", r["register1_rate"], "tasks/s", "register1"),
        ("GetTask", r["get_rate"], "calls/s", "get"),
        ("RegisterTasks, batch of 100", r["register100_rate"], "tasks/s", ""),
        ("StreamResults (1 client)", r["stream_rate"], "results/s", ""),
    ]
    for label, rate, unit, key in rows:
        latency = ""
        if key:
            latency = f"  p50 {r[key + '_p50_us']:5.0f} us  p99 {r[key + '_p99_us']:5.0f} us"
            latency += f"  server CPU {r[key + '_cpu_us']:4.0f} us/call"
        print(f"  {label:<32}: {rate:9.0f} {unit:<9}{latency}")
    print(f"  StreamResults dropped           : {r['stream_dropped']:9.0f}")
    print(f"  unary RegisterTasks(1) / echo   : {r['register1_rate'] / r['echo_rate']:9.2f}   (target >= 0.80)")
    print(f"  unary GetTask / echo            : {r['get_rate'] / r['echo_rate']:9.2f}")
    # The same comparison in server CPU per call (echo's / ours): what the server side costs, whatever else
    # runs on the machine; the rate ratios above move with the load of other processes.
    print(f"  server CPU, echo / RegisterTasks: {r['echo_cpu_us'] / r['register1_cpu_us']:9.2f}")
    print(f"  server CPU, echo / GetTask      : {r['echo_cpu_us'] / r['get_cpu_us']:9.2f}")
    idle = r["idle_streams_rate"] / r["idle_none_rate"]
    idle_cpu = r["idle_none_cpu_us"] / r["idle_streams_cpu_us"]
    print(f"  RegisterTasks(100), no stream   : {r['idle_none_rate']:9.0f} tasks/s  server CPU "
          f"{r['idle_none_cpu_us']:5.1f} us/task")  # fmt: skip
    print(f"  ... {IDLE_STREAMS:,} idle filtered open : {r['idle_streams_rate']:9.0f} tasks/s  server CPU "
          f"{r['idle_streams_cpu_us']:5.1f} us/task")  # fmt: skip
    print(f"  ... the same, gc.freeze()d      : {r['idle_frozen_rate']:9.0f} tasks/s  server CPU "
          f"{r['idle_frozen_cpu_us']:5.1f} us/task")  # fmt: skip
    print(f"  idle streams / none, rate       : {idle:9.2f}   (target >= 0.90; CPU per task {idle_cpu:.2f})")
    frozen = r["idle_frozen_rate"] / r["idle_none_rate"]
    frozen_cpu = r["idle_none_cpu_us"] / r["idle_frozen_cpu_us"]
    print(f"  ... gc.freeze()d / none, rate   : {frozen:9.2f}   (CPU per task {frozen_cpu:.2f})")
    each, batch = r["durable-each"], r["durable-batch"]
    print(
        f"  RegisterDurableTasks(100) batch : {batch:9.0f} tasks/s  server CPU {r['durable-batch_cpu_us']:5.1f} us/task"
    )
    print(
        f"  ... one enqueue per task        : {each:9.0f} tasks/s  server CPU {r['durable-each_cpu_us']:5.1f} us/task"
    )
    print(f"  durable batch / per task, rate  : {batch / each:9.2f}   (target >= 5)")


if __name__ == "__main__":
    main()
