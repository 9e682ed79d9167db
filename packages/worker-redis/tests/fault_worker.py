"""A worker process for the fault tests: a TaskManager on RedisDurableBackend that logs every attempt.

Usage: ``python fault_worker.py URL PREFIX LOG_FILE LEASE_S WORK_MS WORKERS [RENEWAL]``. Each handler call
appends ``S <task id> <attempt> <epoch s>`` before working and ``D <task id> <attempt> <epoch s>`` after,
flushed at once, so a SIGKILL loses nothing already written. A task whose payload is ``"die"`` logs
``K <task id> <attempt>`` and SIGKILLs its own process (an OOM kill, a segfault). ``RENEWAL`` is
``default`` (the manager's own lease renewal) or seconds; without it, a quarter of the lease. SIGTERM stops
the manager gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any, TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTaskLease
from worker_redis import RedisDurableBackend


async def main(
    url: str, prefix: str, log: TextIO, lease: float, work_s: float, workers: int, renewal: str | None
) -> None:
    async def work(ctx: TaskContext, payload: object) -> None:
        if payload == "die":
            log.write(f"K {ctx.task_id} {ctx.attempt} {time.time():.4f}\n")
            log.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        log.write(f"S {ctx.task_id} {ctx.attempt} {time.time():.4f}\n")
        log.flush()
        if work_s:
            await asyncio.sleep(work_s)
        log.write(f"D {ctx.task_id} {ctx.attempt} {time.time():.4f}\n")
        log.flush()

    class LoggingBackend(RedisDurableBackend):
        async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
            leases = await super().dequeue(limit, lease)
            if leases:
                log.write(f"L {len(leases)} {limit} {time.time():.4f} {' '.join(le.lease_id for le in leases)}\n")
            return leases

    backend = LoggingBackend.from_url(url, prefix=prefix)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    renewing: dict[str, Any] = {}
    if renewal is None:
        renewing["durable_lease_renewal_interval"] = lease / 4  # a live but slow worker keeps its leases
    elif renewal != "default":
        renewing["durable_lease_renewal_interval"] = float(renewal)
    tm = TaskManager(
        max_workers=workers,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_lease=lease,
        durable_poll_interval=0.05,
        **renewing,
    )
    async with tm:
        log.write(f"READY {time.time():.4f}\n")
        log.flush()
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    url_, prefix_, path, lease_, work_ms, workers_ = sys.argv[1:7]
    renewal_ = sys.argv[7] if len(sys.argv) > 7 else None
    with open(path, "a", encoding="utf-8") as out:
        asyncio.run(main(url_, prefix_, out, float(lease_), float(work_ms) / 1000, int(workers_), renewal_))
