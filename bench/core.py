"""worker-core throughput, memory and latency (see bench/README.md for figures and how to read them).

Run: ``uv run python bench/core.py`` (or ``uvx nox -s bench``). ``BENCH_SCALE=0.1`` shrinks every size.
``--baselines-only`` runs just the two hand-written asyncio pools (standard library only, no worker-core needed):
``python3.13 bench/core.py --baselines-only``.

Every figure is reported against its target, never asserted. The async throughput workload: no-op ``async def``
tasks, 8 at a time, each with a random priority (``random.Random(SEED)``, 0..9, the same list for every side),
every result delivered to the timing loop. The two baselines:

- **isolated pool**: what a user would write for the same isolation: one ``asyncio.Task`` per job
  (``asyncio.create_task``, so each job runs in its own copy of the context), an ``asyncio.Semaphore(8)`` bounding
  how many run at once, results put on an ``asyncio.Queue`` that the timing loop consumes. The target ratio is
  against this one.
- **bare pool**: 8 long-lived worker coroutines on one ``asyncio.PriorityQueue`` of ``(priority, seq, fn)``,
  results to an ``asyncio.Queue``: no isolation between jobs; for reference.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker_core import TaskContext

# worker_core is imported where it is used, so that ``--baselines-only`` runs on an interpreter without it.

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
N_ASYNC = int(100_000 * SCALE)
N_SYNC = int(20_000 * SCALE)
N_QUEUED = int(1_000_000 * SCALE)
N_LATENCY = int(2_000 * SCALE)
N_FLAT = int(1_000_000 * SCALE)  # tasks through one manager for the flat-memory figure
FLAT_BATCH = 10_000  # registered, then waited for, at a time
N_OTEL = int(20_000 * SCALE)
WORKERS = 8
ROUNDS = 3
SEED = 20_261_128
KIB = 1024

# Async no-op throughput, TaskManager / isolated pool: >= 1.0 on Python 3.12+, >= 0.8 on 3.11.
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
TARGET_RATIO = 1.0 if sys.version_info >= (3, 12) else 0.8
TARGET_LATENCY_P99_US = 50.0

NoopFn = Callable[[Any], Awaitable[object]]


async def noop(ctx: TaskContext) -> None:
    return None


def noop_sync(ctx: TaskContext) -> None:
    return None


def random_priorities(n: int, seed: int = SEED) -> list[int]:
    """``n`` priorities in 0..9 from ``random.Random(seed)``: generated once per size, used by every side."""
    rng = random.Random(seed)
    return [rng.randint(0, 9) for _ in range(n)]


# ------------------------------------------------------------------------------------------------ baselines


async def isolated_pool(priorities: Sequence[int], fn: NoopFn = noop) -> float:
    """One ``asyncio.Task`` per job (own context copy), ``Semaphore(8)``, results to an ``asyncio.Queue``.

    The priority travels with the job but does not order it: semaphore waiters are served first come, first
    served, and a plain per-job pool has nothing else that would.
    """
    n = len(priorities)
    limit = asyncio.Semaphore(WORKERS)
    results: asyncio.Queue[Any] = asyncio.Queue()

    async def job(fn: NoopFn, priority: int) -> None:
        async with limit:
            results.put_nowait(await fn(None))

    started = time.perf_counter()
    # Strong references, as the asyncio docs ask for (the loop keeps only weak ones).
    jobs = [asyncio.create_task(job(fn, priority)) for priority in priorities]
    for _ in range(n):
        await results.get()
    elapsed = time.perf_counter() - started
    await asyncio.gather(*jobs)  # all done by now; outside the timing
    return n / elapsed


async def bare_pool(priorities: Sequence[int], fn: NoopFn = noop) -> float:
    """8 worker coroutines on one ``asyncio.PriorityQueue`` of ``(priority, seq, fn)``; results to an asyncio.Queue."""
    n = len(priorities)
    queue: asyncio.PriorityQueue[tuple[int, int, NoopFn]] = asyncio.PriorityQueue()
    results: asyncio.Queue[Any] = asyncio.Queue()

    async def worker() -> None:
        while True:
            _priority, _seq, job = await queue.get()
            results.put_nowait(await job(None))
            queue.task_done()

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    for seq, priority in enumerate(priorities):
        queue.put_nowait((priority, seq, fn))
    for _ in range(n):
        await results.get()
    elapsed = time.perf_counter() - started
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return n / elapsed


# ------------------------------------------------------------------------------------------------ TaskManager


async def manager_throughput(priorities: Sequence[int], fn: Callable[[TaskContext], Any]) -> float:
    """One task per priority through a TaskManager (rate limit off, 8 workers), one subscriber draining results."""
    from worker_core import Task, TaskManager

    n = len(priorities)
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
        for priority in priorities:
            await tm.register_task(Task(fn, priority=priority))
        await consumer
        elapsed = time.perf_counter() - started
        subscription.close()
        assert tm.metrics().results_dropped == 0
    return n / elapsed


async def noop_no_ctx() -> None:
    return None


async def submit_throughput(priorities: Sequence[int]) -> float:
    """The same workload through ``submit`` (options per priority) and ``await handle`` for every result."""
    from worker_core import TaskManager

    n = len(priorities)
    async with TaskManager(max_workers=WORKERS, max_tasks=n, tasks_per_second=None) as tm:
        submitters = {p: tm.with_options(priority=p) for p in set(priorities)}
        started = time.perf_counter()
        handles = [await submitters[priority].submit(noop_no_ctx) for priority in priorities]
        for handle in handles:
            await handle
        elapsed = time.perf_counter() - started
    return n / elapsed


async def memory_per_queued_task(n: int) -> float:
    """Bytes per task held by a manager with ``n`` tasks queued (no worker runs)."""
    from worker_core import Task, TaskManager

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


async def memory_over_run(n: int, batch: int = FLAT_BATCH) -> tuple[int, int, int, int]:
    """``n`` no-op tasks through one manager (default retention) in batches: register ``batch``, ``wait()``.

    Returns ``(tasks_at_first_sample, bytes_then, tasks_at_end, bytes_then)``: ``tracemalloc``'s current traced
    memory after ``gc.collect()``, first once a fifth of ``n`` has run (200,000 of 1,000,000), then at the end.
    Traced from before the manager is made, so everything it allocates counts.
    """
    from worker_core import Task, TaskManager

    priorities = random_priorities(batch)
    first_at = max(n // 5, 1)
    first: tuple[int, int] | None = None
    gc.collect()
    tracemalloc.start()
    try:
        async with TaskManager(max_workers=WORKERS, max_tasks=batch, tasks_per_second=None) as tm:
            done = 0
            while done < n:
                for priority in priorities[: n - done]:
                    await tm.register_task(Task(noop, priority=priority))
                await tm.wait()
                done += min(batch, n - done)
                if first is None and done >= first_at:
                    gc.collect()
                    first = (done, tracemalloc.get_traced_memory()[0])
            gc.collect()
            last = (done, tracemalloc.get_traced_memory()[0])  # the manager still running, as at the first sample
    finally:
        tracemalloc.stop()
    assert first is not None
    return (*first, *last)


async def start_latency(n: int) -> tuple[float, float]:
    """p50/p99 seconds from ``register_task`` to the start of ``execute`` on an idle manager."""
    from worker_core import Task, TaskManager

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


# ------------------------------------------------------------------------------------------------ report


def _progress(message: str) -> None:
    print(f"  ... {message}", file=sys.stderr, flush=True)


def _table(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  " + "-+-".join("-" * width for width in widths))
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


async def baselines(priorities: Sequence[int]) -> tuple[float, float]:
    """Best of ``ROUNDS`` interleaved runs of each baseline: ``(isolated, bare)`` tasks/s."""
    isolated: list[float] = []
    bare: list[float] = []
    for i in range(ROUNDS):
        _progress(f"baselines, round {i + 1}/{ROUNDS}")
        gc.collect()
        isolated.append(await isolated_pool(priorities))
        gc.collect()
        bare.append(await bare_pool(priorities))
    return max(isolated), max(bare)


async def baselines_only() -> None:
    priorities = random_priorities(N_ASYNC)
    isolated, bare = await baselines(priorities)
    rows = [
        ("figure", "value", "note"),
        (f"isolated pool (task per job, Semaphore(8)), async no-op x{N_ASYNC:,}", f"{isolated:,.0f} tasks/s", ""),
        (f"bare pool (8 coroutines, PriorityQueue), async no-op x{N_ASYNC:,}", f"{bare:,.0f} tasks/s", ""),
        ("isolated / bare", f"{isolated / bare:.2f}", "what the per-job isolation costs"),
    ]
    print(f"baselines only (best of {ROUNDS}, random priorities 0..9, seed {SEED}):")
    for line in _table(rows):
        print(line)


async def main() -> None:
    print(f"worker-core bench, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, scale {SCALE}")
    if "--baselines-only" in sys.argv[1:]:
        await baselines_only()
        return
    priorities = random_priorities(N_ASYNC)
    # Interleaved rounds, best of each: other load on the machine hits every side alike; each side starts from
    # a collected heap, not the previous side's garbage.
    isolated_runs: list[float] = []
    bare_runs: list[float] = []
    managed_runs: list[float] = []
    submit_runs: list[float] = []
    for i in range(ROUNDS):
        _progress(f"async throughput, round {i + 1}/{ROUNDS}")
        gc.collect()
        isolated_runs.append(await isolated_pool(priorities))
        gc.collect()
        bare_runs.append(await bare_pool(priorities))
        gc.collect()
        managed_runs.append(await manager_throughput(priorities, noop))
        gc.collect()
        submit_runs.append(await submit_throughput(priorities))
    isolated, bare, managed = max(isolated_runs), max(bare_runs), max(managed_runs)
    submitted = max(submit_runs)
    _progress("sync throughput")
    gc.collect()
    sync = await manager_throughput(random_priorities(N_SYNC), noop_sync)
    _progress("memory per queued task")
    gc.collect()
    per_task = await memory_per_queued_task(N_QUEUED)
    _progress(f"memory over {N_FLAT:,} tasks (tracemalloc on: slow)")
    first_n, first_bytes, last_n, last_bytes = await memory_over_run(N_FLAT)
    growth = last_bytes - first_bytes
    _progress("start latency")
    gc.collect()
    p50, p99 = await start_latency(N_LATENCY)

    ratio = managed / isolated
    mib = KIB * KIB
    rows = [
        ("figure", "value", "target"),
        (f"TaskManager, async no-op x{N_ASYNC:,} (best of {ROUNDS})", f"{managed:,.0f} tasks/s", ""),
        ("isolated pool: task per job, Semaphore(8) (same run)", f"{isolated:,.0f} tasks/s", ""),
        ("bare pool: 8 coroutines, PriorityQueue (same run)", f"{bare:,.0f} tasks/s", ""),
        (
            "ratio TaskManager / isolated pool",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO:.1f} on Python {PY}: {_met(ratio >= TARGET_RATIO)}",
        ),
        ("ratio TaskManager / bare pool", f"{managed / bare:.2f}", "reference"),
        (f"submit + await handle, async no-op x{N_ASYNC:,} (best of {ROUNDS})", f"{submitted:,.0f} tasks/s", ""),
        (
            "cost of submit + handle over register_task + subscription",
            f"{managed / submitted - 1:+.0%}",
            f"<= +10%: {_met(managed / submitted - 1 <= 0.10)}",
        ),
        ("ratio isolated pool / bare pool", f"{isolated / bare:.2f}", "reference"),
        (f"sync no-op (thread pool) x{N_SYNC:,}", f"{sync:,.0f} tasks/s", ""),
        (
            f"memory per queued task ({N_QUEUED:,} queued)",
            f"{per_task:,.0f} bytes",
            f"<= 1 KiB: {_met(per_task <= KIB)}",
        ),
        (
            f"register -> start, idle manager (x{N_LATENCY:,}), p50 / p99",
            f"{p50 * 1e6:,.1f} us / {p99 * 1e6:,.1f} us",
            f"p99 <= {TARGET_LATENCY_P99_US:.0f} us: {_met(p99 * 1e6 <= TARGET_LATENCY_P99_US)}",
        ),
        (f"traced memory after {first_n:,} tasks (default retention)", f"{first_bytes / mib:,.1f} MiB", ""),
        (f"traced memory after {last_n:,} tasks", f"{last_bytes / mib:,.1f} MiB", ""),
        (
            f"growth from {first_n:,} to {last_n:,} tasks",
            f"{growth / mib:+,.1f} MiB ({growth / max(last_n - first_n, 1):+,.0f} bytes/task)",
            "flat",
        ),
    ]
    print(f"async workload: no-op tasks, {WORKERS} at a time, random priorities 0..9 (seed {SEED}), every result read")
    for line in _table(rows):
        print(line)

    otel = import_module("otel_overhead")  # bench/otel_overhead.py, next to this script
    print(f"worker-otel overhead, async no-op x{N_OTEL} (ratio to off; targets: metrics <= 5%, tracing <= 30%):")
    for line in otel.format_otel_overhead(await otel.measure_otel_overhead(N_OTEL, rounds=5)):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
