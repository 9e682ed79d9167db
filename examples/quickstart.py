"""worker-core in one screen: prioritized tasks in weighted queues, a retry, a cancellation, a delayed task.

Run: ``uv run examples/quickstart.py``. Results are printed as they stream in.
"""

from __future__ import annotations

import asyncio
import time

from worker_core import Retry, Task, TaskContext, TaskManager, TaskStatus

START = time.monotonic()


def elapsed() -> str:
    return f"{time.monotonic() - START:5.2f}s"


async def resize(ctx: TaskContext) -> str:
    await asyncio.sleep(0.05)  # pretend to work
    return f"resized image {ctx.task.name}"


async def flaky_upload(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise Retry(delay=0.1, reason="storage busy")  # counted against the task's retries
    return f"uploaded on attempt {ctx.attempt}"


def checksum(ctx: TaskContext) -> int:
    # A plain function runs in the manager's thread pool; ctx.cancelled is set on cancel or timeout.
    return sum(range(100_000))


async def forever(ctx: TaskContext) -> None:
    await asyncio.Event().wait()


async def main() -> None:
    # Two workers, no rate limit; the "critical" queue gets 3 starts for every 1 of "bulk".
    async with TaskManager(
        max_workers=2, max_tasks=50, tasks_per_second=None, queue_weights={"critical": 3, "bulk": 1}
    ) as tm:
        with tm.subscribe_results(buffer=50) as results:

            async def show() -> None:
                async for result in results:
                    outcome = result.result if result.status is TaskStatus.COMPLETED else repr(result.error)
                    print(
                        f"{elapsed()}  {result.task.queue:8}  {result.task.name:12} {result.status.value:10} {outcome}"
                    )

            printer = asyncio.create_task(show())

            tm.set_max_workers(0)  # hold the workers while we queue, so priorities and weights show
            for i in range(4):
                await tm.register_task(Task(resize, name=f"bulk-{i}", queue="bulk", priority=5))
                await tm.register_task(Task(resize, name=f"crit-{i}", queue="critical", priority=5))
            await tm.register_task(Task(resize, name="urgent", queue="bulk", priority=0))  # lower runs first
            await tm.register_task(Task(flaky_upload, name="upload", retries=2))
            await tm.register_task(Task(checksum, name="checksum", queue="critical"))
            stuck = await tm.register_task(Task(forever, name="stuck", queue="bulk"))
            await tm.register_task_after(Task(resize, name="delayed"), 0.3)
            await tm.cancel_task(stuck)  # cancelled before it ever runs
            tm.set_max_workers(2)

            await tm.wait(timeout=30)
            results.close()
            await printer

        m = tm.metrics()
        counts = f"{m.completed} completed, {m.cancelled} cancelled, {m.retried} retried, {m.failed} failed"
        print(f"{elapsed()}  done: {counts}")


if __name__ == "__main__":
    asyncio.run(main())
