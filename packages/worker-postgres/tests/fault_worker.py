"""A worker process for the fault tests: a TaskManager on PostgresDurableBackend that logs every attempt.

Usage: ``python fault_worker.py URL LOG_FILE LEASE_S WORK_MS WORKERS``. Each handler call appends
``S <task id> <attempt> <epoch s>`` before working and ``D <task id> <attempt> <epoch s>`` after, flushed at
once, so a SIGKILL loses nothing already written. A payload ``"die"`` logs ``K <task id> <attempt>`` and
SIGKILLs its own process (an OOM kill); a payload ``{"sleep": s}`` works ``s`` seconds. Settles are logged as
``ACK <id> ok|lost`` and renewals that find a lease lost as ``LOST <id>``. SIGTERM stops gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import LeaseLostError
from worker_postgres import PostgresDurableBackend


async def main(url: str, log: TextIO, lease: float, work_s: float, workers: int) -> None:
    def write(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    async def work(ctx: TaskContext, payload: object) -> None:
        if payload == "die":
            write(f"K {ctx.task_id} {ctx.attempt} {time.time():.4f}")
            os.kill(os.getpid(), signal.SIGKILL)
        write(f"S {ctx.task_id} {ctx.attempt} {time.time():.4f}")
        pause = payload.get("sleep", work_s) if isinstance(payload, dict) else work_s
        if pause:
            await asyncio.sleep(float(pause))
        write(f"D {ctx.task_id} {ctx.attempt} {time.time():.4f}")

    class LoggingBackend(PostgresDurableBackend):
        async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
            await self._logged(lease, super().ack_with_outcome(lease, outcome, ttl))

        async def ack(self, lease: DurableTaskLease) -> None:
            await self._logged(lease, super().ack(lease))

        async def _logged(self, lease: DurableTaskLease, call: Awaitable[None]) -> None:
            try:
                await call
            except LeaseLostError:
                write(f"ACK {lease.lease_id} lost")
                raise
            write(f"ACK {lease.lease_id} ok")

        async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
            held = await super().extend_many(leases, duration)
            for one, ok in zip(leases, held, strict=True):
                if not ok:
                    write(f"LOST {one.lease_id}")
            return held

    backend = LoggingBackend.from_url(url)
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
        durable_poll_interval=0.2,
        durable_lease_renewal_interval=lease / 4,
    )
    async with tm:
        write(f"READY {time.time():.4f}")
        await stop.wait()
    await backend.aclose()


if __name__ == "__main__":
    url_, path, lease_, work_ms, workers_ = sys.argv[1:6]
    with open(path, "a", encoding="utf-8") as out:
        asyncio.run(main(url_, out, float(lease_), float(work_ms) / 1000, int(workers_)))
