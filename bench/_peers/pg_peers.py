"""One library's side of ``bench/postgres.py``, run inside that library's own virtualenv.

``python pg_peers.py LIB drive URL`` prints one JSON object of figures; it starts ``python pg_peers.py LIB
worker URL`` (one worker process, concurrency 16) itself. LIB is ``worker``, ``procrastinate`` or ``pgqueuer``.
The worker writes ``<done epoch s> <enqueued epoch s>`` to its stdout for every task it runs (the same cost for
each library); the driver reads it to time end-to-end throughput and pickup latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

N = int(os.environ.get("BENCH_N", "5000"))
TRICKLE = int(os.environ.get("BENCH_TRICKLE", "1000"))
WARMUP = 50
RATE = 200.0
CONCURRENCY = 16

Enqueue = Callable[[float], Awaitable[Any]]


def _done(t: float) -> None:
    sys.stdout.write(f"{time.time():.6f} {t:.6f}\n")
    sys.stdout.flush()


# -- worker-postgres -----------------------------------------------------------------------------------


async def worker_setup(url: str) -> None:
    from worker_postgres import PostgresDurableBackend

    backend = PostgresDurableBackend.from_url(url)
    await backend.migrate()
    await backend.aclose()


async def worker_producer(url: str) -> tuple[Enqueue, Callable[[], Awaitable[None]]]:
    from worker_core.durable import DurableTask
    from worker_postgres import PostgresDurableBackend

    backend = PostgresDurableBackend.from_url(url, pool_max=2)
    await backend.connect()

    async def one(t: float) -> None:
        await backend.enqueue(DurableTask("noop", payload=b'{"t":%r}' % t, id=uuid.uuid4()))

    return one, backend.aclose


async def worker_worker(url: str) -> None:
    from worker_core import TaskContext, TaskManager
    from worker_core.durable import DurableHandlerSpec

    async def noop(ctx: TaskContext, payload: Any) -> None:
        _done(float(payload["t"]))

    tm = TaskManager(
        max_workers=CONCURRENCY,
        tasks_per_second=None,
        durable_backend=url,
        durable_handlers={"noop": DurableHandlerSpec(None, noop)},
        durable_codec="json",
        durable_result_ttl=None,
    )
    async with tm:
        print("READY", flush=True)
        await asyncio.Event().wait()


# -- procrastinate -------------------------------------------------------------------------------------


def _procrastinate_app(url: str) -> Any:
    import procrastinate  # type: ignore[import-not-found, unused-ignore]

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")  # type: ignore[untyped-decorator, unused-ignore]
    async def noop(t: float) -> None:
        _done(t)

    return app


async def procrastinate_setup(url: str) -> None:
    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def procrastinate_producer(url: str) -> tuple[Enqueue, Callable[[], Awaitable[None]]]:
    app = _procrastinate_app(url)
    opened = app.open_async()
    await opened.__aenter__()
    task = app.tasks["noop"]

    async def one(t: float) -> None:
        await task.defer_async(t=t)

    async def close() -> None:
        await opened.__aexit__(None, None, None)

    return one, close


async def procrastinate_worker(url: str) -> None:
    app = _procrastinate_app(url)
    async with app.open_async():
        print("READY", flush=True)
        await app.run_worker_async(concurrency=CONCURRENCY, wait=True, install_signal_handlers=False)


# -- pgqueuer ------------------------------------------------------------------------------------------


async def pgqueuer_setup(url: str) -> None:
    import psycopg
    from pgqueuer import Queries  # type: ignore[import-not-found, unused-ignore]

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries.from_psycopg_connection(conn).install()


async def pgqueuer_producer(url: str) -> tuple[Enqueue, Callable[[], Awaitable[None]]]:
    import psycopg
    from pgqueuer import Queries  # type: ignore[import-not-found, unused-ignore]

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    queries = Queries.from_psycopg_connection(conn)

    async def one(t: float) -> None:
        await queries.enqueue("noop", repr(t).encode())

    return one, conn.close


async def pgqueuer_worker(url: str) -> None:
    import psycopg
    from pgqueuer import Job, PgQueuer  # type: ignore[import-not-found, unused-ignore]

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    pgq = PgQueuer.from_psycopg_connection(conn)

    @pgq.entrypoint("noop")  # type: ignore[untyped-decorator, unused-ignore]
    async def noop(job: Job) -> None:
        _done(float(job.payload or b"0"))

    print("READY", flush=True)
    await pgq.run(batch_size=CONCURRENCY // 2, max_concurrent_tasks=CONCURRENCY)


LIBS: dict[str, tuple[Any, Any, Any]] = {
    "worker": (worker_setup, worker_producer, worker_worker),
    "procrastinate": (procrastinate_setup, procrastinate_producer, procrastinate_worker),
    "pgqueuer": (pgqueuer_setup, pgqueuer_producer, pgqueuer_worker),
}


# -- the driver ----------------------------------------------------------------------------------------


class Completions:
    """The worker's stdout: one line per task run."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream
        self.lines: list[tuple[float, float]] = []
        self._changed = asyncio.Event()

    async def pump(self) -> None:
        while line := await self._stream.readline():
            parts = line.split()
            if len(parts) == 2:
                self.lines.append((float(parts[0]), float(parts[1])))
                self._changed.set()

    async def wait_for(self, count: int, timeout: float = 300.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.lines) < count:
                self._changed.clear()
                await self._changed.wait()


async def drive(lib: str, url: str) -> dict[str, Any]:
    setup, producer, _ = LIBS[lib]
    await setup(url)
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__)),
        lib,
        "worker",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert worker.stdout is not None
    ready = await asyncio.wait_for(worker.stdout.readline(), 60)
    assert ready.strip() == b"READY", ready
    done = Completions(worker.stdout)
    pump = asyncio.create_task(done.pump())
    enqueue, close = await producer(url)
    try:
        for _ in range(WARMUP):
            await enqueue(time.time())
        await done.wait_for(WARMUP)
        start = time.perf_counter()
        for _ in range(N):
            await enqueue(time.time())
        enqueued = time.perf_counter() - start
        await done.wait_for(WARMUP + N)
        elapsed = time.perf_counter() - start
        base = len(done.lines)
        began = time.perf_counter()
        for i in range(TRICKLE):  # 200 tasks/s to an otherwise idle worker
            delay = began + i / RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await enqueue(time.time())
        await done.wait_for(base + TRICKLE)
        pickups = sorted((finish - t) * 1000 for finish, t in done.lines[base:])
    finally:
        await close()
        worker.terminate()
        await worker.wait()
        pump.cancel()
    return {
        "lib": lib,
        "n": N,
        "enqueue_one_per_s": N / enqueued,
        "e2e_per_s": N / elapsed,
        "pickup_p50_ms": statistics.median(pickups),
        "pickup_p99_ms": pickups[int(len(pickups) * 0.99) - 1],
        "trickle": TRICKLE,
    }


def main() -> None:
    lib, role, url = sys.argv[1:4]
    if role == "worker":
        asyncio.run(LIBS[lib][2](url))
    else:
        print(json.dumps(asyncio.run(drive(lib, url))))


if __name__ == "__main__":
    main()
