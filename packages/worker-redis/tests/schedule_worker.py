"""A node for the schedule tests: a TaskManager on RedisDurableBackend running one 1-second durable schedule.

Usage: ``python schedule_worker.py URL PREFIX LOG_FILE [SKEW_S]``. The schedule's clock is the system clock plus
``SKEW_S``. Each run of a tick's task appends ``R <tick ms> <pid> <epoch s>`` to the log, flushed at once (a
SIGKILL loses nothing written). ``READY`` is logged once the manager runs; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_core.schedules import META_SCHEDULE_TICK
from worker_redis import RedisDurableBackend

SCHEDULE = "every-second"


async def main(url: str, prefix: str, log: TextIO, skew: float) -> None:
    def tick(ctx: TaskContext, payload: object) -> None:
        metadata = ctx.task.metadata or {}
        log.write(f"R {metadata.get(META_SCHEDULE_TICK, '-')} {os.getpid()} {time.time():.4f}\n")
        log.flush()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    backend = RedisDurableBackend.from_url(url, prefix=prefix)
    tm = TaskManager(
        max_workers=4,
        durable_backend=backend,
        durable_handlers={"tick": DurableHandlerSpec(None, tick)},
        durable_codec="json",
        durable_lease=2.0,
        durable_poll_interval=0.05,
        schedule_clock=lambda: time.time() + skew,
    )
    tm.register_durable_cron_task(SCHEDULE, "* * * * * *", lambda: DurableTask("tick", {"n": 1}))
    async with tm:
        log.write(f"READY {time.time():.4f}\n")
        log.flush()
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    url_, prefix_, path = sys.argv[1:4]
    skew_ = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    with open(path, "a", encoding="utf-8") as out:
        asyncio.run(main(url_, prefix_, out, skew_))
