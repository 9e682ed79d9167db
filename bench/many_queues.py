"""Dequeue cost after many queue names were used once, on every durable backend.

A deployment that names a queue per tenant, per customer or per day uses each name for a while, then never
again. A dequeue must cost what the queues *with work* cost, not every name ever used. For each backend (a
private ``redis-server`` and PostgreSQL started here on free loopback ports, a temporary SQLite file), the
script enqueues one task into each of ``BENCH_QUEUES`` queues (default 10,000), drains them (dequeue + ack),
then times ``BENCH_ROUNDS`` dequeues of an idle store and one dequeue of a single new task. On Redis, queues
drained less than 15 minutes ago are still known (they leave ``P:queues`` after that), so the idle figure is
also shown after their idle marks are set back past the grace period, as a deployment sees it later.

Command: ``uv run --no-sync python bench/many_queues.py`` (``BENCH_QUEUES=1000`` for a quick run).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# bench/redis.py shadows redis-py when this directory is on sys.path: keep it off.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from worker_core.durable import DurableTask  # noqa: E402

N = int(os.environ.get("BENCH_QUEUES", "10000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))


def _task(queue: str) -> DurableTask:
    return DurableTask("h", payload=b"x", id=uuid.uuid4(), queue=queue)


async def _drain(backend: Any, n: int) -> None:
    await backend.enqueue_many([_task(f"q{i}") for i in range(n)])
    done = 0
    while done < n:
        leases = await backend.dequeue(500, 30.0)
        for lease in leases:
            await backend.ack(lease)
        done += len(leases)


async def _ms(call: Callable[[], Awaitable[Any]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _measure(name: str, backend: Any, after_drain: Callable[[], Awaitable[None]] | None = None) -> None:
    await _drain(backend, N)
    idle = await _ms(lambda: backend.dequeue(10, 30.0), ROUNDS)
    later = None
    if after_drain is not None:
        await after_drain()
        await backend.dequeue(10, 30.0)  # forgets the queues past their grace period
        later = await _ms(lambda: backend.dequeue(10, 30.0), ROUNDS)
    await backend.enqueue(_task("zz-new"))
    one = await _ms(lambda: backend.dequeue(10, 30.0), 1)
    extra = f"; idle, 15 minutes later: {later:.2f} ms" if later is not None else ""
    print(f"{name:<10} {N:,} drained queues: idle dequeue {idle:.2f} ms (median of {ROUNDS}){extra}; "
          f"dequeue of one new task {one:.2f} ms")  # fmt: skip


async def redis() -> None:
    from redis.asyncio import Redis
    from worker_redis import RedisDurableBackend
    from worker_redis.testing import redis_server

    with redis_server() as srv:
        backend = RedisDurableBackend.from_url(srv.url, prefix="bench-queues")
        raw = Redis.from_url(srv.url)

        async def age_marks() -> None:
            idle = backend.keys.queues + ":idle"
            marks = await raw.hgetall(idle)
            old = int((time.time() - 16 * 60) * 1000)
            if marks:
                await raw.hset(idle, mapping=dict.fromkeys(marks, old))

        async with backend:
            await _measure("redis", backend, age_marks)
        await raw.aclose()


async def sqlite() -> None:
    from worker_sqlite import SqliteDurableBackend

    with tempfile.TemporaryDirectory() as tmp:
        backend = SqliteDurableBackend(Path(tmp) / "bench.db")
        async with backend:
            await _measure("sqlite", backend)


async def postgres() -> None:
    from worker_postgres import PostgresDurableBackend
    from worker_postgres.testing import find_bindir, postgres_server

    if find_bindir() is None:
        print("postgres   skipped: no initdb/pg_ctl (apt-get install postgresql)")
        return
    with postgres_server() as srv:
        backend = PostgresDurableBackend(srv.url)
        await backend.migrate()
        try:
            await _measure("postgres", backend)
        finally:
            await backend.aclose()


async def main() -> None:
    for run in (redis, sqlite, postgres):
        await run()


if __name__ == "__main__":
    asyncio.run(main())
