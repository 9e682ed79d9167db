"""Schedules: a cron job in process, and a durable schedule that two nodes share without running a tick twice.

Run: ``uv run examples/schedules.py``. The durable half uses the in-memory backend, shared by two managers in
this process as two machines would share Redis (``RedisDurableBackend.from_url(...)``): each tick is enqueued
once, by whichever node fires first, and a run asked for with ``trigger_schedule`` is taken by one node.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from worker_core import DurableTask, TaskContext, TaskManager, define_task
from worker_core.durable import DurableHandlerSpec
from worker_core.schedules import META_SCHEDULE_TICK
from worker_core.testing import InMemoryDurableBackend


async def in_process() -> None:
    beats: asyncio.Queue[str] = asyncio.Queue()

    @define_task(queue="maintenance", name="heartbeat")
    async def heartbeat() -> None:
        await beats.put("beat")

    async with TaskManager() as tm:
        tm.every(timedelta(seconds=1))(heartbeat)  # or @tm.cron("*/5 * * * *") above a job of no arguments
        for _ in range(2):
            await beats.get()
        (info,) = await tm.schedules(upcoming=2)
        print(f"in process: {info.name} {info.spec}, fired {info.fired}, next {len(info.next_runs)} runs known")


async def durable() -> None:
    backend = InMemoryDurableBackend()
    runs: Counter[str] = Counter()
    enough = asyncio.Event()

    def report(ctx: TaskContext, payload: object) -> None:
        tick = (ctx.task.metadata or {}).get(META_SCHEDULE_TICK, "manual")
        runs[tick] += 1
        if len(runs) >= 4:
            enough.set()

    def node() -> TaskManager:
        tm = TaskManager(durable_backend=backend, durable_handlers={"report": DurableHandlerSpec(None, report)})
        tm.register_durable_cron_task(
            "report", "* * * * * *", lambda: DurableTask("report", {"kind": "daily"}), tz="Europe/Berlin"
        )
        return tm

    first, second = node(), node()
    async with first, second:
        await second.trigger_schedule("report")  # one extra run now, taken by exactly one node
        await enough.wait()
    ticks = [tick for tick in runs if tick != "manual"]
    print(f"durable: {len(ticks)} ticks on 2 nodes, each run once: {set(runs.values()) == {1}}")
    print(f"durable: manual runs: {runs['manual']}")


async def main() -> None:
    await in_process()
    await durable()


if __name__ == "__main__":
    asyncio.run(main())
