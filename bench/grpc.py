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


async def _serve_worker(conn: Connection) -> None:
    registry = worker_grpc.HandlerRegistry()
    registry.handler("noop")(_noop)
    async with TaskManager(max_workers=8, max_tasks=10_000_000, tasks_per_second=None) as manager:
        server = await worker_grpc.serve(manager, registry, "127.0.0.1:0", stream_buffer=1_000_000)
        conn.send(worker_grpc.server_port(server))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until the parent says stop
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
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
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


async def _bench(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    one = _one_task_request()
    hundred = pb.RegisterTasksRequest(tasks=list(one.tasks) * 100)
    echo_server = _Server("echo")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{echo_server.port}", options=NO_PROXY) as channel:
            raw = one.SerializeToString()
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)

            async def echo_call() -> Any:
                return await echo(raw)

            out["echo_p50_us"], out["echo_p99_us"] = await _latency(echo_call, n // 4)
            out["echo_rps"] = await _rate(echo_call, n)
    finally:
        echo_server.stop()

    worker_server = _Server("worker")
    dropped = 0
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{worker_server.port}", options=NO_PROXY) as channel:
            stub = pb.WorkerServiceStub(channel)
            last: list[str] = []

            async def register_one() -> Any:
                response = await stub.RegisterTasks(one)
                last[:] = response.ids
                return response

            async def register_hundred() -> Any:
                return await stub.RegisterTasks(hundred)

            out["register1_p50_us"], out["register1_p99_us"] = await _latency(register_one, n // 4)
            out["register1_tasks_s"] = await _rate(register_one, n)
            get = pb.GetTaskRequest(id=last[0])

            async def get_task() -> Any:
                return await stub.GetTask(get)

            out["get_p50_us"], out["get_p99_us"] = await _latency(get_task, n // 4)
            out["get_rps"] = await _rate(get_task, n)
            out["register100_tasks_s"] = await _rate(register_hundred, max(n // 50, CONCURRENCY * 4)) * 100

            # StreamResults: one client follows every result while batches of 100 are registered.
            total = (n // 100) * 100
            call = stub.StreamResults(pb.StreamResultsRequest())
            await stub.RegisterTasks(one)
            await call.read()  # the stream is up
            received = 0

            async def follow() -> None:
                nonlocal received
                while received < total:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        return
                    received += 1

            start = time.perf_counter()
            follower = asyncio.create_task(follow())
            for _ in range(total // 100):
                await stub.RegisterTasks(hundred)
            await asyncio.wait_for(follower, 120)
            out["stream_results_s"] = received / (time.perf_counter() - start)
            call.cancel()
    finally:
        dropped = worker_server.stop()
    out["stream_dropped"] = dropped
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    r = asyncio.run(_bench(n))
    print(f"worker-grpc loopback benchmark ({n} calls per figure, {CONCURRENCY} in flight for rates)")
    rows = [
        ("bare grpc.aio echo (same sizes)", r["echo_rps"], "calls/s", "echo"),
        ("RegisterTasks, batch of 1", r["register1_tasks_s"], "tasks/s", "register1"),
        ("GetTask", r["get_rps"], "calls/s", "get"),
        ("RegisterTasks, batch of 100", r["register100_tasks_s"], "tasks/s", ""),
        ("StreamResults (1 client)", r["stream_results_s"], "results/s", ""),
    ]
    for label, rate, unit, key in rows:
        latency = f"  p50 {r[key + '_p50_us']:6.0f} us  p99 {r[key + '_p99_us']:6.0f} us" if key else ""
        print(f"  {label:<32}: {rate:9.0f} {unit:<9}{latency}")
    print(f"  StreamResults dropped           : {r['stream_dropped']:9.0f}")
    print(f"  unary RegisterTasks(1) / echo   : {r['register1_tasks_s'] / r['echo_rps']:9.2f}   (target >= 0.70)")
    print(f"  unary GetTask / echo            : {r['get_rps'] / r['echo_rps']:9.2f}")


if __name__ == "__main__":
    main()
