"""worker-core throughput, memory and latency (see bench/README.md for figures and how to read them).

Run: ``uv run python bench/core.py`` (or ``uvx nox -s bench``). ``BENCH_SCALE=0.1`` shrinks every size.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time
import tracemalloc
from importlib import import_module
from typing import Any

from worker_core import COMPILED, Task, TaskContext, TaskManager

BUILD = "compiled (mypyc)" if COMPILED else "pure Python"  # which worker-core this measures

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N_ASYNC = int(100_000 * SCALE)
N_SYNC = int(20_000 * SCALE)
N_QUEUED = int(1_000_000 * SCALE)
N_LATENCY = int(2_000 * SCALE)
N_OTEL = int(20_000 * SCALE)
WORKERS = 8
ROUNDS = 3


async def noop(ctx: TaskContext) -> None:
    return None


def noop_sync(ctx: TaskContext) -> None:
    return None


async def raw_baseline(n: int) -> float:
    """The same work by hand: a PriorityQueue, 8 worker coroutines, results to an asyncio.Queue."""
    queue: asyncio.PriorityQueue[tuple[int, int, Any]] = asyncio.PriorityQueue()
    results: asyncio.Queue[Any] = asyncio.Queue()

    async def worker() -> None:
        while True:
            _priority, _seq, fn = await queue.get()
            results.put_nowait(await fn(None))
            queue.task_done()

    async def drain() -> None:
        for _ in range(n):
            await results.get()

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    consumer = asyncio.create_task(drain())
    for seq in range(n):
        queue.put_nowait((0, seq, noop))
    await consumer
    elapsed = time.perf_counter() - started
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return n / elapsed


async def manager_throughput(n: int, fn: Any) -> float:
    """``n`` tasks through a TaskManager (rate limit off, 8 workers) with one subscriber draining results."""
    async with TaskManager(max_workers=WORKERS, max_tasks=n, tasks_per_second=None) as tm:
        subscription = tm.subscribe_results(buffer=n)
        received = 0

        async def drain() -> None:
            nonlocal received
            async for _ in subscription:
                received += 1
                if received == n:
                    return

        started = time.perf_counter()
        consumer = asyncio.create_task(drain())
        for _ in range(n):
            await tm.register_task(Task(fn))
        await consumer
        elapsed = time.perf_counter() - started
        subscription.close()
        assert tm.metrics().results_dropped == 0
    return n / elapsed


async def memory_per_queued_task(n: int) -> float:
    """Bytes per task held by a manager with ``n`` tasks queued (no worker runs)."""
    tm = TaskManager(max_workers=1, max_tasks=n, tasks_per_second=None)
    await tm.start()
    tm.set_max_workers(0)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(n):
        await tm.register_task(Task(noop))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert tm.metrics().queue_depth == n
    await tm.stop_now()
    return (after - before) / n


async def start_latency(n: int) -> tuple[float, float]:
    """p50/p99 seconds from ``register_task`` to the start of ``execute`` on an idle manager."""
    samples: list[float] = []
    async with TaskManager(max_workers=WORKERS, max_tasks=10, tasks_per_second=None) as tm:
        for _ in range(n):
            started = asyncio.get_running_loop().create_future()

            async def mark(ctx: TaskContext, started: asyncio.Future[float] = started) -> None:
                started.set_result(time.perf_counter())

            t0 = time.perf_counter()
            await tm.register_task(Task(mark))
            samples.append(await started - t0)
            await tm.wait()
    quantiles = statistics.quantiles(samples, n=100)
    return quantiles[49], quantiles[98]


async def main() -> None:
    print(f"worker-core bench, {BUILD}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, scale {SCALE}")
    # Interleaved rounds, best of each: other load on the machine hits both sides alike.
    raws, manageds = [], []
    for _ in range(ROUNDS):
        gc.collect()  # each side starts from the same heap, not the other's garbage
        raws.append(await raw_baseline(N_ASYNC))
        gc.collect()
        manageds.append(await manager_throughput(N_ASYNC, noop))
    raw, managed = max(raws), max(manageds)
    print(
        f"async no-op x{N_ASYNC} (best of {ROUNDS}): TaskManager {managed:,.0f} tasks/s, raw asyncio {raw:,.0f} tasks/s"
    )
    print(f"  ratio TaskManager/raw = {managed / raw:.2f} (target >= 0.5)")
    sync = await manager_throughput(N_SYNC, noop_sync)
    print(f"sync no-op (thread pool) x{N_SYNC}: {sync:,.0f} tasks/s")
    per_task = await memory_per_queued_task(N_QUEUED)
    print(f"memory per queued task ({N_QUEUED:,} queued): {per_task:,.0f} bytes (target <= 1024)")
    p50, p99 = await start_latency(N_LATENCY)
    print(f"register -> start latency, idle manager (x{N_LATENCY}): p50 {p50 * 1e6:,.0f} us, p99 {p99 * 1e6:,.0f} us")
    otel = import_module("otel_overhead")  # bench/otel_overhead.py, next to this script
    print(f"worker-otel overhead, async no-op x{N_OTEL} (ratio to off; targets: metrics <= 5%, tracing <= 30%):")
    for line in otel.format_otel_overhead(await otel.measure_otel_overhead(N_OTEL, rounds=5)):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
