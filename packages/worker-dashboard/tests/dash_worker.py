"""A worker process for the dashboard tests: ``python dash_worker.py URL``; prints ``ready``, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from dash_tasks import QUEUE_WEIGHTS, registry
from worker_core import TaskManager


async def main(url: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with TaskManager(
        max_workers=4,
        durable_backend=url,
        durable_handlers=registry.handlers(),
        durable_lease=3.0,
        queue_weights=QUEUE_WEIGHTS,
    ):
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
