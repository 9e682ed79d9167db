"""worker-grpc on loopback: RegisterTasks (batches of 1 and 100), StreamResults, unary latency, vs a bare echo.

The server runs in its own process (as in production: the client's work does not share its CPU); the
baseline is a bare ``grpc.aio`` service in a process of its own that answers raw bytes of the same sizes as
RegisterTasks (no protobuf, no TaskManager): what gRPC itself costs. Run with ``nox -s bench -- bench/grpc.py``
or ``uv run python bench/grpc.py [--quick]``.
"""

from __future__ import annotations

import os
import sys

# This file is named grpc.py: keep its directory off sys.path, or `import grpc` would import this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
import worker_grpc  # noqa: E402
from google.protobuf.wrappers_pb2 import StringValue  # noqa: E402
from worker_core import TaskContext, TaskManager  # noqa: E402
from worker_grpc import messages as pb  # noqa: E402

ECHO_METHOD = "/bench.Echo/Echo"
CONCURRENCY = 32
# Loopback calls must not go through an HTTP proxy configured in the environment.
NO_PROXY = (("grpc.enable_http_proxy", 0),)


def _one_task_request() -> pb.RegisterTasksRequest:
    payload = pb.Task(name="noop", metadata={"queue": "bench"})
    payload.payload.Pack(StringValue(value="x" * 32))
    return pb.RegisterTasksRequest(tasks=[payload])


async def _noop(ctx: TaskContext, payload: StringValue | None) -> None:
    return None


async def _answer_until_stop(conn: Connection) -> None:
    """Answer "cpu" with this process's CPU seconds (all threads) until "stop"."""
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, conn.recv)) != "stop":
        conn.send(time.process_time())


async def _serve_worker(conn: Connection) -> None:
    registry = worker_grpc.HandlerRegistry()
    registry.handler("noop")(_noop)
    async with TaskManager(max_workers=8, max_tasks=10_000_000, tasks_per_second=None) as manager:
        server = await worker_grpc.serve(manager, registry, "127.0.0.1:0", stream_buffer=1_000_000)
        conn.send(worker_grpc.server_port(server))
        await _answer_until_stop(conn)
        conn.send(manager.metrics().results_dropped)
        await server.stop(None)
        await manager.stop_now()


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


def _server_main(kind: str, conn: Connection) -> None:
    asyncio.run(_serve_worker(conn) if kind == "worker" else _serve_echo(conn))


class _Server:
    def __init__(self, kind: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_server_main, args=(kind, child), daemon=True)
        self._proc.start()
        self.port: int = self._conn.recv()

    def cpu(self) -> float:
        self._conn.send("cpu")
        seconds: float = self._conn.recv()
        return seconds

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


async def _rate(call: Callable[[], Awaitable[Any]], n: int) -> float:
    """Calls per second with CONCURRENCY calls in flight."""
    per_worker = n // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    for _ in range(200):
        await call()
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
                    p50, p99 = await _latency(call, n // 4)
                    samples.setdefault(f"{key}_p50_us", []).append(p50)
                    samples.setdefault(f"{key}_p99_us", []).append(p99)
                    cpu = server.cpu()
                    samples.setdefault(f"{key}_rate", []).append(await _rate(call, n))
                    # Server CPU per call (all its threads): what the server side costs, whatever the load.
                    samples.setdefault(f"{key}_cpu_us", []).append((server.cpu() - cpu) / n * 1e6)

            async def register_hundred() -> Any:
                return await stub.RegisterTasks(hundred)

            samples["register100_rate"] = [await _rate(register_hundred, max(n // 50, CONCURRENCY * 4)) * 100]
            samples["stream_rate"] = [await _stream_rate(stub, hundred, (n // 100) * 100)]
    finally:
        echo_server.stop()
        dropped = worker_server.stop()
    out = {key: statistics.median(values) for key, values in samples.items()}
    out["stream_dropped"] = dropped
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls, one round (a smoke run)")
    args = parser.parse_args()
    n, rounds = (2_000, 1) if args.quick else (20_000, 3)
    r = asyncio.run(_bench(n, rounds))
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
    print(f"  unary RegisterTasks(1) / echo   : {r['register1_rate'] / r['echo_rate']:9.2f}   (target >= 0.70)")
    print(f"  unary GetTask / echo            : {r['get_rate'] / r['echo_rate']:9.2f}")
    # The same comparison in server CPU per call (echo's / ours): what the server side costs, whatever else
    # runs on the machine; the rate ratios above move with the load of other processes.
    print(f"  server CPU, echo / RegisterTasks: {r['echo_cpu_us'] / r['register1_cpu_us']:9.2f}")
    print(f"  server CPU, echo / GetTask      : {r['echo_cpu_us'] / r['get_cpu_us']:9.2f}")


if __name__ == "__main__":
    main()
