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


work = DurableTaskType("work", Job, queue="alpha", retries=0)
other = DurableTaskType("other", Job, queue="beta", retries=0)
registry = TypedDurableRegistry()


class PaymentDeclined(Exception):
    pass


def charge(n: int) -> None:
    raise PaymentDeclined(f"card declined for order {n}")


def _exists(path: str) -> bool:
    return os.path.exists(path)


@registry.handler(work)
async def run_work(ctx: TaskContext, job: Job) -> Any:
    failing: bool = bool(job.fail_while) and await asyncio.to_thread(_exists, job.fail_while)
    if failing:
        charge(job.n)
    return {"n": job.n, "attempt": ctx.attempt}


@registry.handler(other)
async def run_other(ctx: TaskContext, job: Job) -> Any:
    return {"n": job.n}
