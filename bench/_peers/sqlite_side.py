"""One library's side of ``bench/sqlite.py``, run inside that library's interpreter.

``python sqlite_side.py worker consume DB MARKS`` runs one worker process (a TaskManager on
``sqlite:///DB``); ``python sqlite_side.py LIB produce DB MARKS N`` enqueues N tasks one call at a time and
prints one JSON object (enqueue seconds, end-to-end seconds). Each handler appends one byte to
``MARKS/<pid>``, so the producer sees completions of every process without touching the database.
Huey's consumer is started by the driver with ``huey_consumer sqlite_huey_app.huey``.
"""

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_marks: Any = None


def mark(folder: str) -> None:
    """Record one completed task (one byte appended to this process's file)."""
    global _marks
    if _marks is None:
        _marks = open(Path(folder) / str(os.getpid()), "ab", buffering=0)  # noqa: SIM115 - kept open, process-wide
    _marks.write(b".")


def completed(folder: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(folder))


def wait_done(folder: str, n: int) -> None:
    while completed(folder) < n:
        time.sleep(0.002)


def url(lib: str, db: str) -> str:
    """``worker`` runs the defaults; ``worker-normal`` adds ``synchronous=normal``."""
    return f"sqlite:///{db}" + ("?synchronous=normal" if lib == "worker-normal" else "")


async def worker_consume(lib: str, db: str, marks: str) -> None:
    from worker_core import DurableTaskType, TaskContext, TaskManager, TypedDurableRegistry

    noop = DurableTaskType("noop", int)
    registry = TypedDurableRegistry()

    @registry.handler(noop)
    async def run(ctx: TaskContext, i: int) -> None:
        mark(marks)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with TaskManager(
        max_workers=16, tasks_per_second=None, durable_backend=url(lib, db), durable_handlers=registry.handlers()
    ):
        print("READY", flush=True)
        await stop.wait()


async def worker_produce(lib: str, db: str, marks: str, n: int) -> dict[str, float]:
    from worker_core import DurableTaskType, TaskManager

    noop = DurableTaskType("noop", int)
    producer = TaskManager(durable_backend=url(lib, db), durable_handlers=[noop])
    await producer.register_durable_task(noop.task(-1))  # opens the file: not timed
    wait_done(marks, 1)
    start = time.perf_counter()
    for i in range(n):
        await producer.register_durable_task(noop.task(i))
    enqueued = time.perf_counter() - start
    await asyncio.to_thread(wait_done, marks, n + 1)
    done = time.perf_counter() - start
    await producer.stop_now()
    return {"enqueue_s": enqueued, "e2e_s": done}


def huey_produce(marks: str, n: int) -> dict[str, float]:
    from sqlite_huey_app import noop  # type: ignore[import-not-found, unused-ignore]

    noop(-1)
    wait_done(marks, 1)
    start = time.perf_counter()
    for i in range(n):
        noop(i)
    enqueued = time.perf_counter() - start
    wait_done(marks, n + 1)
    return {"enqueue_s": enqueued, "e2e_s": time.perf_counter() - start}


def main() -> None:
    lib, role, db, marks = sys.argv[1:5]
    if role == "consume":
        asyncio.run(worker_consume(lib, db, marks))
        return
    n = int(sys.argv[5])
    figures = huey_produce(marks, n) if lib == "huey" else asyncio.run(worker_produce(lib, db, marks, n))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
