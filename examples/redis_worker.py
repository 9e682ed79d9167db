"""Durable tasks in Redis: any number of these processes share one queue, and a task survives their crashes.

Run: ``WORKER_REDIS_URL=redis://localhost:6379/0 uv run examples/redis_worker.py`` (start a Redis first).
The program enqueues a few tasks, runs them on its own workers through ``TaskManager(durable_backend=URL)``
(the ``redis://`` scheme comes from the worker-redis plugin), and then lists the dead-letter queue with the
admin API that ``workerctl`` uses. Run several copies at once and the tasks spread over all of them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta

import msgspec
from worker_core import DurableTask, TaskContext, TaskManager, TaskStatus, TypedDurableRegistry
from worker_redis.admin import RedisAdmin


class Resize(msgspec.Struct):
    image: str
    width: int


handlers = TypedDurableRegistry()


@handlers.handler("resize")
async def resize(ctx: TaskContext, job: Resize) -> str:
    # Raising makes the attempt fail: the task is nacked and delivered again (to any node) after the
    # durable backoff, until its retries are spent; then it goes to the dead-letter queue with the error.
    if job.image.startswith("flaky") and ctx.attempt == 1:
        raise ConnectionError("storage busy")
    if job.image.endswith(".txt"):
        raise ValueError(f"{job.image} is not an image")
    return f"{job.image} -> {job.width}px (delivery {ctx.attempt})"


async def main() -> None:
    url = os.environ.get("WORKER_REDIS_URL", "redis://localhost:6379/0")
    prefix = f"example-{uuid.uuid4().hex[:8]}"  # a fresh deployment per run, so runs never see each other
    async with TaskManager(
        max_workers=4,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend=f"{url}?prefix={prefix}",
        durable_handlers=handlers.handlers(),
        durable_lease=10.0,  # a task whose node dies is delivered again 10 s later at most
    ) as tm:
        with tm.subscribe_results(buffer=10) as results:
            await tm.register_durable_task(DurableTask("resize", Resize("cat.png", 640)))
            await tm.register_durable_task(DurableTask("resize", Resize("flaky.jpg", 320), retries=2))
            await tm.register_durable_task(DurableTask("resize", Resize("notes.txt", 100), retries=1))
            await tm.register_durable_task_after(DurableTask("resize", Resize("late.png", 64)), timedelta(seconds=0.3))
            for _ in range(4):
                result = await anext(results)
                outcome = result.result if result.status is TaskStatus.COMPLETED else repr(result.error)
                print(f"{result.status.value:9} {outcome}")

    async with RedisAdmin.from_url(url, prefix=prefix) as admin:
        for entry in (await admin.dlq()).entries:
            print(f"dead letter: {entry.handler} after {entry.attempts} deliveries: {entry.last_error}")
        purged = await admin.purge(dlq=True, delete_hash=True)  # tidy up this run's deployment
        print(f"purged: {purged.dead} dead letter(s)")


if __name__ == "__main__":
    asyncio.run(main())
