"""The worker app of bench/processes.py: one plain (threaded) durable handler that burns ~1 ms of CPU."""

from __future__ import annotations

import os
from typing import Any

import redis
from cpu_work import burn  # type: ignore[import-not-found, unused-ignore]
from worker_core import TaskManager
from worker_core.durable import DurableHandlerSpec

_DONE = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def work(ctx: Any, payload: Any) -> int:
    result: int = burn(int(payload["n"]))
    _DONE.incr("bench:done")
    return result


def create_manager(*, durable_backend: Any, max_workers: int = 4, plain_runner: Any = "thread") -> TaskManager:
    return TaskManager(
        max_workers=max_workers,
        plain_runner=plain_runner,
        durable_backend=durable_backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_result_ttl=None,
    )
