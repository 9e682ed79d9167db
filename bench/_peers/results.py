"""The result store's side of ``bench/redis.py`` (worker-redis only): its cost, and how fast a producer wakes.

``python results.py drive URL`` prints one JSON object:

* ``e2e_stored_per_s`` / ``e2e_off_per_s``: N no-op durable tasks (a small dict result) enqueued in batches of
  100 to a running worker (concurrency 16, same process, its own connections), first enqueue to last ack, with
  outcomes stored (``durable_result_ttl`` 1 h) and with ``durable_result_ttl=None``; rounds alternate, best kept;
* ``wake_p50_ms`` / ``wake_p99_ms``: a producer process awaits ``handle.result()`` of a task run by a worker
  in another process (``python results.py worker URL PREFIX LOG``); time from the worker's ack call returning
  to the producer's wake-up (``wake_after_send_*``: from the ack call being sent), for TRICKLE tasks one at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from worker_core import TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask, DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_redis import RedisDurableBackend

N = int(os.environ.get("BENCH_N", "10000"))
TRICKLE = int(os.environ.get("BENCH_TRICKLE", "1000"))
ROUNDS = int(os.environ.get("BENCH_RESULT_ROUNDS", "2"))
CONCURRENCY = 16


async def _noop(ctx: Any, payload: Any) -> Any:
    return {"t": payload["t"]}


HANDLERS = {"noop": DurableHandlerSpec(None, _noop)}


class CountingBackend(RedisDurableBackend):
    """Sets ``done`` once ``expect`` tasks were acked (with or without an outcome)."""

    expect = 0
    acked = 0
    done: asyncio.Event

    async def ack(self, lease: DurableTaskLease) -> None:
        await super().ack(lease)
        self._count()

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        await super().ack_with_outcome(lease, outcome, ttl)
        self._count()

    def _count(self) -> None:
        self.acked += 1
        if self.acked >= self.expect:
            self.done.set()


async def e2e(url: str, ttl: float | None) -> float:
    prefix = f"bench-results-{uuid.uuid4().hex[:6]}"
    backend = CountingBackend.from_url(url, prefix=prefix)
    backend.expect, backend.done = N, asyncio.Event()
    producer = RedisDurableBackend.from_url(url, prefix=prefix)
    tm = TaskManager(
        max_workers=CONCURRENCY,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers=HANDLERS,
        durable_codec="json",
        durable_result_ttl=ttl,
    )
    try:
        async with tm:
            start = time.perf_counter()
            for first in range(0, N, 100):
                batch = [
                    DurableTask("noop", payload=b'{"t":%d}' % n, id=uuid.uuid4()) for n in range(first, first + 100)
                ]
                await producer.enqueue_many(batch)
            await asyncio.wait_for(backend.done.wait(), 600)
            elapsed = time.perf_counter() - start
    finally:
        await producer.aclose()
        await backend.aclose()
    return N / elapsed


async def wake(url: str) -> dict[str, float]:
    prefix = f"bench-wake-{uuid.uuid4().hex[:6]}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{prefix}.log"
    worker = _spawn(url, prefix, log)
    backend = RedisDurableBackend.from_url(url, prefix=prefix)
    producer = TaskManager(durable_backend=backend, durable_handlers=HANDLERS)  # never started
    woke: dict[str, float] = {}
    try:
        assert worker.stdout is not None
        worker.stdout.readline()
        for n in range(TRICKLE):
            task_id = uuid.uuid4()
            waiting = asyncio.create_task(producer.handle(task_id).result(timeout=60))
            await asyncio.sleep(0.002)  # the subscription is confirmed: the wake-up, not the first read, answers
            await producer.register_durable_task(DurableTask("noop", {"t": n}, id=task_id))
            await waiting
            woke[str(task_id)] = time.time()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        if worker.stdout is not None:
            worker.stdout.close()
        await backend.aclose()
    after_done, after_sent = [], []
    for line in log.read_text().splitlines():
        _, key, sent, done = line.split()
        if key in woke:
            after_done.append((woke[key] - float(done)) * 1000)
            after_sent.append((woke[key] - float(sent)) * 1000)
    log.unlink()
    q = statistics.quantiles(after_done, n=100)
    return {
        "wake_p50_ms": statistics.median(after_done),
        "wake_p99_ms": q[98],
        "wake_after_send_p50_ms": statistics.median(after_sent),
        "samples": len(after_done),
    }


def _spawn(url: str, prefix: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "worker", url, prefix, str(log)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, env=os.environ.copy())


async def run_worker(url: str, prefix: str, log: TextIO) -> None:
    class LoggingBackend(RedisDurableBackend):
        async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
            sent = time.time()
            await super().ack_with_outcome(lease, outcome, ttl)
            log.write(f"A {lease.lease_id} {sent:.6f} {time.time():.6f}\n")
            log.flush()

    backend = LoggingBackend.from_url(url, prefix=prefix)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tm = TaskManager(max_workers=CONCURRENCY, tasks_per_second=None, durable_backend=backend, durable_handlers=HANDLERS)
    async with tm:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stop.wait()
    await backend.aclose()


async def drive(url: str) -> dict[str, Any]:
    stored: list[float] = []
    off: list[float] = []
    for _ in range(ROUNDS):
        stored.append(await e2e(url, 3600.0))
        off.append(await e2e(url, None))
    figures: dict[str, Any] = {"e2e_stored_per_s": max(stored), "e2e_off_per_s": max(off)}
    figures["ratio"] = figures["e2e_stored_per_s"] / figures["e2e_off_per_s"]
    figures.update(await wake(url))
    return figures


def main() -> None:
    if sys.argv[1] == "drive":
        sys.stdout.write(json.dumps(asyncio.run(drive(sys.argv[2]))) + "\n")
    else:
        with open(sys.argv[4], "a", encoding="utf-8") as out:
            asyncio.run(run_worker(sys.argv[2], sys.argv[3], out))


if __name__ == "__main__":
    main()
