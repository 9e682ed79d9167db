"""The durable task type of the result-store tests: declared here, imported by the producer and the worker."""

from __future__ import annotations

from typing import Any

import msgspec
from worker_core import DurableTaskType, TaskContext, TypedDurableRegistry


class Job(msgspec.Struct):
    n: int
    mode: str = "ok"


job = DurableTaskType("result-job", Job, retries=0)
registry = TypedDurableRegistry()


def explode(n: int) -> None:
    raise ValueError(f"bad input {n}")


@registry.handler(job)
async def run_job(ctx: TaskContext, payload: Job) -> Any:
    if payload.mode == "fail":
        explode(payload.n)
    return {"double": payload.n * 2}
