"""A worker process for the fault tests: a TaskManager on SqliteDurableBackend that logs every attempt.

Usage: ``python fault_worker.py DB_PATH LOG_FILE LEASE_S WORK_MS WORKERS``. Each handler call appends
``S <task id> <attempt> <epoch s>`` before working and ``D <task id> <attempt> <epoch s>`` after, and every
ack ``A <task id> ok|lost``, flushed at once, so a SIGKILL loses nothing already written. A task whose
payload is ``"die"`` logs ``K <task id> <attempt>`` and SIGKILLs its own process (an OOM kill, a segfault);
one whose payload is ``"slow"`` works 3 s. Leases are renewed every quarter lease. SIGTERM stops gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import LeaseLostError
from worker_sqlite import SqliteDurableBackend


async def main(path: str, log: TextIO, lease: float, work_s: float, workers: int) -> None:
    def write(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    async def work(ctx: TaskContext, payload: object) -> None:
        if payload == "die":
            write(f"K {ctx.task_id} {ctx.attempt} {time.time():.4f}")
            os.kill(os.getpid(), signal.SIGKILL)
        write(f"S {ctx.task_id} {ctx.attempt} {time.time():.4f}")
        await asyncio.sleep(3.0 if payload == "slow" else work_s)
        write(f"D {ctx.task_id} {ctx.attempt} {time.time():.4f}")

    class LoggingBackend(SqliteDurableBackend):
        async def ack(self, lease: DurableTaskLease) -> None:
            try:
                await super().ack(lease)
            except LeaseLostError:
                write(f"A {lease.lease_id} lost")
                raise
            write(f"A {lease.lease_id} ok")

        async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
            try:
                await super().ack_with_outcome(lease, outcome, ttl)
            except LeaseLostError:
                write(f"A {lease.lease_id} lost")
                raise
            write(f"A {lease.lease_id} ok")

    backend = LoggingBackend(path)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tm = TaskManager(
        max_workers=workers,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_lease=lease,
        durable_poll_interval=0.05,
        durable_lease_renewal_interval=lease / 4,
    )
    async with tm:
        write(f"READY {os.getpid()} {time.time():.4f}")
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    path_, log_path, lease_, work_ms, workers_ = sys.argv[1:6]
    with open(log_path, "a", encoding="utf-8") as out:
        asyncio.run(main(path_, out, float(lease_), float(work_ms) / 1000, int(workers_)))
