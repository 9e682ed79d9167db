"""worker-dashboard on a big store: page latency with 100 queues and 1,000,000 tasks, and what an idle page costs.

A private redis-server is filled through the real backend (``enqueue_many``; some tasks leased, some
dead-lettered through ``dequeue`` and ``fail``), then ``python -m worker_dashboard`` serves it as a user runs it.
Figures (reported, never asserted):

* latency of ``GET`` for the overview (HTML and ``/api/overview``), queues, tasks (newest ready), DLQ and workers
  pages: p50, p95 and max of ``BENCH_ROUNDS`` requests each, measured by the client (HTTP included);
* CPU of the dashboard process (and of redis-server) while one page's SSE stream stays open with nothing
  changing, over ``BENCH_IDLE_S`` seconds, as a share of one core (``/proc/<pid>/stat``).

Run: ``uv run --no-sync python bench/dashboard.py``. ``BENCH_TASKS`` (1,000,000), ``BENCH_QUEUES`` (100),
``BENCH_DEAD`` (10,000: the most the overview counts per queue), ``BENCH_ROUNDS`` (20), ``BENCH_IDLE_S`` (30).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/redis.py shadows redis-py when this directory is on sys.path: keep it off.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import asyncio  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402

from worker_core.durable.types import DurableTask  # noqa: E402
from worker_redis import RedisDurableBackend  # noqa: E402
from worker_redis.testing import free_port, redis_server  # noqa: E402

TASKS = int(os.environ.get("BENCH_TASKS", "1000000"))
QUEUES = int(os.environ.get("BENCH_QUEUES", "100"))
DEAD = int(os.environ.get("BENCH_DEAD", "10000"))
LEASED = 1000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20"))
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "30"))
TICK = os.sysconf("SC_CLK_TCK")


async def fill(url: str) -> None:
    payload = b'{"order": 12345, "password": "x", "items": [1, 2, 3]}'
    async with RedisDurableBackend.from_url(url) as backend:
        batch: list[DurableTask] = []
        for i in range(TASKS):
            batch.append(DurableTask("job", payload=payload, id=uuid.uuid4(), queue=f"q{i % QUEUES:03d}", retries=0))
            if len(batch) == 5000:
                await backend.enqueue_many(batch)
                batch = []
        if batch:
            await backend.enqueue_many(batch)
        dead = 0
        while dead < DEAD:  # in batches: one dequeue call of thousands overflows the script's unpack()
            for lease in await backend.dequeue(min(500, DEAD - dead), 300.0):
                await backend.fail(lease, "ValueError: bad input")  # dead-lettered with an error
                dead += 1
        await backend.dequeue(LEASED, 3600.0)  # held: the processing sets


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return (time.perf_counter() - start) * 1000


def idle_stream(url: str, stop: threading.Event, events: list[int]) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:
        while not stop.is_set():
            line = response.readline()
            if not line:
                return
            if line.startswith(b"event:"):
                events.append(1)


def main() -> None:
    print(f"worker-dashboard bench: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    with redis_server() as srv:
        url = f"{srv.url}?prefix=bench"
        started = time.perf_counter()
        asyncio.run(fill(url))
        print(
            f"filled {TASKS:,} tasks in {QUEUES} queues ({DEAD:,} dead, {LEASED:,} leased) in "
            f"{time.perf_counter() - started:.0f} s"
        )
        port = free_port()
        dash = subprocess.Popen(
            [sys.executable, "-m", "worker_dashboard", "--url", url, "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get(base + "/healthz")
                    break
                except OSError:
                    if dash.poll() is not None:
                        raise SystemExit(f"the dashboard exited with {dash.returncode}") from None
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            pages = ["/", "/api/overview", "/queues", "/tasks?state=ready", "/tasks?state=dead", "/dlq", "/workers"]
            print(f"\n| page | p50 ms | p95 ms | max ms |  ({ROUNDS} requests each, after 2 warm-ups)")
            print("|---|---|---|---|")
            for page in pages:
                for _ in range(2):
                    get(base + page)
                times = sorted(get(base + page) for _ in range(ROUNDS))
                p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                print(f"| `{page}` | {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} |")

            stop, events = threading.Event(), list[int]()
            reader = threading.Thread(
                target=idle_stream, args=(base + "/events?topics=overview,dead", stop, events), daemon=True
            )
            reader.start()
            time.sleep(5)  # let the stream open and the first ticks pass before measuring
            d0, r0, t0 = cpu_seconds(dash.pid), cpu_seconds(srv.process.pid), time.monotonic()  # type: ignore[union-attr]
            time.sleep(IDLE_S)
            d1, r1, t1 = cpu_seconds(dash.pid), cpu_seconds(srv.process.pid), time.monotonic()  # type: ignore[union-attr]
            stop.set()
            wall = t1 - t0
            print(f"\nidle page (one open SSE stream, default 2 s refresh, {wall:.0f} s):")
            print(f"  dashboard process: {100 * (d1 - d0) / wall:.2f}% of one core")
            print(f"  redis-server:      {100 * (r1 - r0) / wall:.2f}% of one core")
            print(f"  events received while idle after the first: {max(0, len(events) - 2)}")
        finally:
            dash.terminate()
            dash.wait(10)
            if dash.stdout is not None:
                dash.stdout.close()


if __name__ == "__main__":
    main()
