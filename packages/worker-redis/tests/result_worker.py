"""A worker process for the result-store tests: a TaskManager on RedisDurableBackend running ``job`` tasks.

Usage: ``python result_worker.py URL PREFIX LOG_FILE``. Each ack with an outcome appends
``A <task id> <epoch s before the call> <epoch s after it>`` to ``LOG_FILE``, flushed at once. ``ready`` is
printed on stdout once the manager runs; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TextIO

from result_tasks import registry
from worker_core import TaskManager
from worker_core.durable import DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_redis import RedisDurableBackend


async def main(url: str, prefix: str, log: TextIO) -> None:
    class LoggingBackend(RedisDurableBackend):
        async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
            sent = time.time()
            await super().ack_with_outcome(lease, outcome, ttl)
            log.write(f"A {lease.lease_id} {sent:.6f} {time.time():.6f}\n")
            log.flush()

    backend = LoggingBackend.from_url(url, prefix=prefix)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with TaskManager(max_workers=8, durable_backend=backend, durable_handlers=registry.handlers()):
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    with open(sys.argv[3], "a", encoding="utf-8") as out:
        asyncio.run(main(sys.argv[1], sys.argv[2], out))
