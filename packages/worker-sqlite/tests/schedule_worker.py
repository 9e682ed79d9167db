"""A node for the schedule tests: a TaskManager on SqliteDurableBackend running one 1-second durable schedule.

Usage: ``python schedule_worker.py PATH LOG_FILE``. Each run of a tick's task appends ``R <tick ms> <pid> <epoch s>``
to the log, flushed at once (a SIGKILL loses nothing written). ``READY`` is logged once the manager runs; SIGTERM
stops it gracefully.
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
from worker_sqlite import SqliteDurableBackend

SCHEDULE = "every-second"


async def main(path: str, log: TextIO) -> None:
    def tick(ctx: TaskContext, payload: object) -> None:
        metadata = ctx.task.metadata or {}
        log.write(f"R {metadata.get(META_SCHEDULE_TICK, '-')} {os.getpid()} {time.time():.4f}\n")
        log.flush()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    backend = SqliteDurableBackend(path)
    tm = TaskManager(
        max_workers=4,
        durable_backend=backend,
        durable_handlers={"tick": DurableHandlerSpec(None, tick)},
        durable_codec="json",
        durable_lease=2.0,
        durable_poll_interval=0.05,
    )
    tm.register_durable_cron_task(SCHEDULE, "* * * * * *", lambda: DurableTask("tick", {"n": 1}))
    async with tm:
        log.write(f"READY {time.time():.4f}\n")
        log.flush()
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    path_, log_path = sys.argv[1:3]
    with open(log_path, "a", encoding="utf-8") as out:
        asyncio.run(main(path_, out))
