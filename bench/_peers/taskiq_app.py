"""The taskiq application of the Redis benchmark: a RedisStreamBroker (taskiq-redis's at-least-once broker)."""

from __future__ import annotations

import os
import time

import counter  # type: ignore[import-not-found, unused-ignore]
from taskiq import TaskiqEvents, TaskiqState  # type: ignore[import-not-found, unused-ignore]
from taskiq_redis import RedisStreamBroker  # type: ignore[import-not-found, unused-ignore]

broker = RedisStreamBroker(os.environ["BENCH_REDIS_URL"])


@broker.on_event(TaskiqEvents.WORKER_STARTUP)  # type: ignore[misc, untyped-decorator, unused-ignore]
async def ready(state: TaskiqState) -> None:
    await counter.ready()


@broker.task  # type: ignore[misc, untyped-decorator, unused-ignore]
async def noop(t: float) -> None:
    await counter.seen(t, time.time())
