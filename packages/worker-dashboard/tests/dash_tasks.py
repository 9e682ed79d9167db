"""The durable task types of the dashboard tests, shared by the tests (producers) and dash_worker.py."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
from worker_core import DurableTaskType, TaskContext, TypedDurableRegistry


class Job(msgspec.Struct):
    n: int
    fail_while: str = ""  # a file path: the task fails while it exists
    password: str = ""  # a field the dashboard must redact
    hold_until: str = ""  # a FIFO's path: the task runs (keeps its lease) until a writer opens and closes it


work = DurableTaskType("work", Job, queue="alpha", retries=0)
other = DurableTaskType("other", Job, queue="beta", retries=0)
registry = TypedDurableRegistry()
QUEUE_WEIGHTS = {"alpha": 3}  # the worker's (dash_worker.py): the queues page shows them


class PaymentDeclined(Exception):
    pass


def charge(n: int) -> None:
    raise PaymentDeclined(f"card declined for order {n}")


def _wait_for_writer(fifo: str) -> None:
    with open(fifo, "rb") as pipe:  # blocks until the test opens the FIFO to write, then reads to its close
        pipe.read()


def release(fifo: str) -> bool:
    """Let the task waiting on ``fifo`` finish; False when no task is waiting on it (nothing reads it)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader
        return False
    os.close(fd)
    return True


def _exists(path: str) -> bool:
    return os.path.exists(path)


@registry.handler(work)
async def run_work(ctx: TaskContext, job: Job) -> Any:
    if job.hold_until:
        await asyncio.to_thread(_wait_for_writer, job.hold_until)
    failing: bool = bool(job.fail_while) and await asyncio.to_thread(_exists, job.fail_while)
    if failing:
        charge(job.n)
    return {"n": job.n, "attempt": ctx.attempt}


@registry.handler(other)
async def run_other(ctx: TaskContext, job: Job) -> Any:
    return {"n": job.n}
