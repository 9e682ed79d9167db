"""What every benchmark worker does per task: count it, and note when the last one of a run finished.

The count stays in the process; Redis is written once per run (the finish time, or the latencies), so the
bookkeeping costs every library the same and adds no round trip per task. A task with ``t < 0`` is a
warm-up task and is not counted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from redis.asyncio import Redis

_client: Redis | None = None
_expect = int(os.environ.get("BENCH_EXPECT", "0"))
_count = 0
_latencies: list[float] = []
#: Optional probe of the worker's Redis calls so far (set by a worker that counts them).
round_trips: Callable[[], int] | None = None
_first_trips = 0


def _redis() -> Redis:
    global _client
    if _client is None:
        _client = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


async def ready() -> None:
    """The worker is up: the driver may start the clock."""
    await _redis().set("bench:ready", time.time())


async def seen(t: float, started: float) -> None:
    """One task ran; ``t`` is its enqueue time (epoch s), ``started`` the start of its handler."""
    global _count, _first_trips
    if t < 0:
        return
    _count += 1
    if _count == 1 and round_trips is not None:
        _first_trips = round_trips()
    _latencies.append(started - t)
    if _count == _expect:
        client = _redis()
        await client.set("bench:latencies", json.dumps(_latencies))
        if round_trips is not None and _expect > 1:
            await client.set("bench:round_trips", (round_trips() - _first_trips) / (_expect - 1))
        await client.set("bench:done_at", time.time())
