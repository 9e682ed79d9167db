"""One library's side of ``bench/redis.py``, run inside that library's own virtualenv.

``python peers.py LIB drive URL`` prints one JSON object of figures; the driver starts
``python peers.py LIB worker URL`` (one worker process, concurrency 16) itself. LIB is one of
``worker``, ``arq``, ``saq``, ``taskiq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import counter  # type: ignore[import-not-found, unused-ignore]  # a sibling: run as a script
from redis.asyncio import Redis

HERE = Path(__file__).parent
N = int(os.environ.get("BENCH_N", "10000"))
TRICKLE = int(os.environ.get("BENCH_TRICKLE", "1000"))
RATE = 200.0
CONCURRENCY = 16

Enqueue = Callable[[float], Awaitable[Any]]


# -- the libraries ---------------------------------------------------------------------------------


async def worker_lib(url: str) -> tuple[Enqueue, Callable[[list[float]], Awaitable[Any]] | None, Any]:
    from worker_core import TaskManager
    from worker_core.durable import DurableHandlerSpec, DurableTask
    from worker_redis import RedisDurableBackend

    backend = RedisDurableBackend.from_url(url, prefix="bench")
    tm = TaskManager(
        durable_backend=backend,
        durable_handlers={"noop": DurableHandlerSpec(None, _noop_worker)},
        durable_codec="json",
    )

    async def one(t: float) -> Any:
        return await tm.register_durable_task(DurableTask("noop", {"t": t}))

    async def many(ts: list[float]) -> Any:
        await backend.enqueue_many([DurableTask("noop", payload=b'{"t":%r}' % t, id=uuid.uuid4()) for t in ts])

    return one, many, backend.aclose


async def _noop_worker(ctx: Any, payload: Any) -> None:
    await counter.seen(payload["t"], time.time())


async def run_worker_lib(url: str) -> None:
    from worker_core import TaskManager
    from worker_core.durable import DurableHandlerSpec
    from worker_redis import RedisDurableBackend

    backend = RedisDurableBackend.from_url(url, prefix="bench")
    await backend.connect()
    calls = [0]
    execute = backend.client.execute_command

    async def counted(*args: Any, **options: Any) -> Any:  # every Redis round trip of the worker's backend
        calls[0] += 1
        return await execute(*args, **options)

    backend.client.execute_command = counted
    counter.round_trips = lambda: calls[0]
    tm = TaskManager(
        max_workers=CONCURRENCY,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"noop": DurableHandlerSpec(None, _noop_worker)},
        durable_codec="json",
    )
    async with tm:
        await counter.ready()
        await asyncio.Event().wait()


async def arq_lib(url: str) -> tuple[Enqueue, None, Any]:
    from arq import create_pool  # type: ignore[import-not-found, unused-ignore]
    from arq.connections import RedisSettings  # type: ignore[import-not-found, unused-ignore]

    pool = await create_pool(RedisSettings.from_dsn(url))

    async def one(t: float) -> Any:
        return await pool.enqueue_job("noop", t)

    return one, None, pool.aclose


async def _noop_arq(ctx: Any, t: float) -> None:
    await counter.seen(t, time.time())


async def run_arq(url: str) -> None:
    from arq.connections import RedisSettings  # type: ignore[import-not-found, unused-ignore]
    from arq.worker import Worker, func  # type: ignore[import-not-found, unused-ignore]

    async def startup(ctx: Any) -> None:
        await counter.ready()

    settings = RedisSettings.from_dsn(url)
    worker = Worker(
        functions=[func(_noop_arq, name="noop")], redis_settings=settings, max_jobs=CONCURRENCY, on_startup=startup
    )
    await worker.async_run()


async def saq_lib(url: str) -> tuple[Enqueue, None, Any]:
    from saq import Queue  # type: ignore[import-not-found, unused-ignore]

    queue = Queue.from_url(url)
    await queue.connect()

    async def one(t: float) -> Any:
        return await queue.enqueue("noop", t=t)

    return one, None, queue.disconnect


async def noop(ctx: Any, *, t: float) -> None:
    await counter.seen(t, time.time())


async def run_saq(url: str) -> None:
    from saq import Queue, Worker  # type: ignore[import-not-found, unused-ignore]

    queue = Queue.from_url(url)

    async def startup(ctx: Any) -> None:
        await counter.ready()

    worker = Worker(queue, functions=[noop], concurrency=CONCURRENCY, startup=startup)
    await worker.start()


async def taskiq_lib(url: str) -> tuple[Enqueue, None, Any]:
    import taskiq_app  # type: ignore[import-not-found, unused-ignore]

    await taskiq_app.broker.startup()

    async def one(t: float) -> Any:
        return await taskiq_app.noop.kiq(t)

    return one, None, taskiq_app.broker.shutdown


LIBS: dict[str, Any] = {"worker": worker_lib, "arq": arq_lib, "saq": saq_lib, "taskiq": taskiq_lib}
WORKERS: dict[str, Any] = {"worker": run_worker_lib, "arq": run_arq, "saq": run_saq}


# -- the driver ------------------------------------------------------------------------------------


def spawn_worker(lib: str, url: str, expect: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_REDIS_URL": url, "BENCH_EXPECT": str(expect), "PYTHONPATH": str(HERE)}
    if lib == "taskiq":
        taskiq = Path(sys.executable).with_name("taskiq")
        argv = [str(taskiq), "worker", "taskiq_app:broker", "--workers", "1", "--max-async-tasks", str(CONCURRENCY)]
    else:
        argv = [sys.executable, str(HERE / "peers.py"), lib, "worker", url]
    # Own session: stop() ends the worker and any child it forked (taskiq's worker runs in a child process).
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group, SIGKILL it after 5 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


POLLS = [0]  # GETs sent by wait_key: subtracted from the server's command count


async def wait_key(client: Redis, key: str, timeout: float = 120.0) -> float:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        POLLS[0] += 1
        value = await client.get(key)
        if value is not None:
            return float(value)
        await asyncio.sleep(0.002)
    raise TimeoutError(f"{key} not set within {timeout}s")


async def commands(client: Redis) -> int:
    return int((await client.info("stats"))["total_commands_processed"])


async def drive(lib: str, url: str) -> dict[str, Any]:
    os.environ["BENCH_REDIS_URL"] = url
    client = Redis.from_url(url)
    out: dict[str, Any] = {"lib": lib}
    one, many, close = await LIBS[lib](url)

    # 1. enqueue throughput, no worker running
    await client.flushdb()
    started = time.perf_counter()
    for _ in range(N):
        await one(0.0)
    out["enqueue_one_per_s"] = N / (time.perf_counter() - started)
    if many is not None:
        await client.flushdb()
        started = time.perf_counter()
        for _ in range(0, N, 500):
            await many([0.0] * 500)
        out["enqueue_batch_per_s"] = N / (time.perf_counter() - started)
    await client.flushdb()

    # 2. end to end: a worker, N tasks, first enqueue to last completion
    out["e2e"] = await e2e(lib, url, client, one, many=None)
    # the shape a web handler has: one producer, each enqueue awaited before the next (no gather, no batch)
    out["e2e_one"] = await e2e(lib, url, client, one, many=None, in_flight=1)
    if many is not None:
        out["e2e_batched"] = await e2e(lib, url, client, one, many=many)

    # 3. pickup latency: a trickle at RATE/s to an idle worker
    await client.flushdb()
    proc = spawn_worker(lib, url, TRICKLE)
    try:
        await wait_key(client, "bench:ready")
        for _ in range(20):  # warm-up
            await one(-1.0)
        await asyncio.sleep(0.5)
        next_at = time.perf_counter()
        for _ in range(TRICKLE):
            next_at += 1 / RATE
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await one(time.time())
        await wait_key(client, "bench:done_at")
        latencies = sorted(json.loads(await client.get("bench:latencies") or "[]"))
        out["latency_p50_ms"] = statistics.median(latencies) * 1000
        out["latency_p99_ms"] = latencies[int(len(latencies) * 0.99) - 1] * 1000
    finally:
        stop(proc)
    await close()
    await client.flushdb()
    await client.aclose()
    return out


async def e2e(lib: str, url: str, client: Redis, one: Enqueue, many: Any, in_flight: int = 100) -> dict[str, float]:
    await client.flushdb()
    proc = spawn_worker(lib, url, N)
    try:
        await wait_key(client, "bench:ready")
        for _ in range(20):  # warm-up: connections made, code paths loaded
            await one(-1.0)
        await asyncio.sleep(0.5)
        before = await commands(client)
        polls = POLLS[0]
        started = time.time()
        if many is not None:
            for _ in range(0, N, 100):
                await many([started] * 100)
        elif in_flight == 1:
            for _ in range(N):
                await one(started)
        else:
            for i in range(0, N, in_flight):  # that many enqueues in flight at a time
                await asyncio.gather(*(one(started) for _ in range(min(in_flight, N - i))))
        enqueued = time.time()
        done = await wait_key(client, "bench:done_at")
        after = await commands(client)
        trips = await client.get("bench:round_trips")
    finally:
        stop(proc)
    return {
        "round_trips_per_task": float(trips) if trips is not None else -1.0,
        "per_s": N / (done - started),
        "enqueue_s": enqueued - started,
        "seconds": done - started,
        # minus our own INFO, the polling GETs and the worker's two final SETs
        "commands_per_task": (after - before - 1 - (POLLS[0] - polls) - 3) / N,
    }


def main() -> None:
    lib, mode, url = sys.argv[1:4]
    host = urlsplit(url).hostname
    assert host in ("127.0.0.1", "localhost"), "the benchmark only talks to a private loopback server"
    if mode == "worker":
        asyncio.run(WORKERS[lib](url))
    else:
        print(json.dumps(asyncio.run(drive(lib, url))))


if __name__ == "__main__":
    main()
