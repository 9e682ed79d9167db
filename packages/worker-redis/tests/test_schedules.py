"""Durable schedules on a real redis-server: the tick script, shared state, and nodes that die, restart or skew.

The fleet test starts 3 worker processes on one 1-second schedule for ~20 s, SIGKILLs one mid-way and starts it
again: every tick is enqueued exactly once (the ``enqueued`` events the tick script writes, counted per tick), and
none is missing between the first and the last while at least one node was alive.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, task, until
from worker_core import ScheduleInfo, TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_core.schedules import (
    META_SCHEDULE_TICK,
    PUBLISHED_TTL_S,
    ScheduleEvent,
    ScheduleRecord,
    TickResult,
    tick_task_id,
)
from worker_core.testing.schedule_node import SCHEDULE, ScheduleNodes
from worker_redis import Keys, RedisDurableBackend
from worker_redis.testing import RedisServer


def enqueued_ticks(raw: list[bytes | str]) -> Counter[int]:
    """Per tick, how many ``enqueued`` events the tick script wrote."""
    counts: Counter[int] = Counter()
    for item in raw:
        event = ScheduleEvent.from_json(json.loads(item))
        if event is not None and event.kind == "enqueued" and event.tick_ms is not None:
            counts[event.tick_ms] += 1
    return counts


def assert_once_without_gaps(counts: Counter[int], until_ms: int | None = None) -> None:
    assert counts, "no tick was enqueued"
    doubled = {tick: n for tick, n in counts.items() if n != 1}
    assert not doubled, doubled
    end = until_ms if until_ms is not None else max(counts)
    missing = [t for t in range(min(counts), end + 1000, 1000) if t not in counts]
    assert not missing, (missing, sorted(counts))


# ---------------------------------------------------------------------------------------- the tick script


async def test_enqueue_tick_is_once_per_tick_and_honours_pause(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    keys = backend.keys
    first = task("tick", id=tick_task_id("s", 5_000))
    assert await backend.enqueue_tick(first, "s", 5_000, 60.0, node="node-a") is TickResult.ENQUEUED
    again = task("tick", id=uuid.uuid4())  # another node's task for the same tick, another id
    assert await backend.enqueue_tick(again, "s", 5_000, 60.0) is TickResult.DUPLICATE
    assert await raw.exists(keys.task(str(again.id))) == 0
    assert 0 < await raw.pttl(keys.schedule_tick("s", 5_000)) <= 60_000
    assert await backend.enqueue_tick(task("tick"), "s", 4_000, 60.0) is TickResult.ENQUEUED  # late, still once
    await backend.set_schedule_paused("s", True)
    assert await backend.enqueue_tick(task("tick"), "s", 6_000, 60.0) is TickResult.PAUSED
    states = await backend.schedule_states(["s", "never"])
    assert states["s"].paused
    assert states["s"].last_tick_ms == 5_000  # the latest tick, not the last call
    assert states["s"].last_event is not None
    assert states["s"].last_event.tick_ms == 4_000
    assert states["never"].paused is False
    assert states["never"].last_tick_ms is None
    await backend.set_schedule_paused("s", False)
    assert not (await backend.schedule_states(["s"]))["s"].paused
    events = await backend.schedule_events("s", 10)
    assert [(e.tick_ms, e.node) for e in events] == [(4_000, ""), (5_000, "node-a")]


async def test_run_requests_are_taken_once_and_corrupt_state_is_skipped(make_backend: MakeBackend, raw: Redis) -> None:
    nodes = [await make_backend() for _ in range(3)]
    await nodes[0].request_schedule_run("s")
    taken = await asyncio.gather(*(node.take_schedule_runs(["s", "t"]) for node in nodes))
    assert sorted(map(len, taken)) == [0, 0, 1]
    assert await nodes[0].take_schedule_runs(["s"]) == []
    keys = nodes[0].keys
    await raw.lpush(keys.schedule_events("s"), b"{not json", json.dumps({"kind": "x"}))
    await nodes[0].record_schedule_event(ScheduleEvent("s", "failed", 1, 2, error="boom"), 5)
    events = await nodes[0].schedule_events("s", 10)
    assert [e.error for e in events] == ["boom"]
    await raw.hset(keys.schedules, "broken", b"[1,2]")
    await raw.hset(keys.schedule_last, "s", b"not-a-number")
    await nodes[1].publish_schedules([ScheduleRecord("s", "* * * * *", "UTC", "default", "once")])
    assert await nodes[2].list_schedules() == [ScheduleRecord("s", "* * * * *", "UTC", "default", "once")]
    assert (await nodes[2].schedule_states(["s"]))["s"].last_tick_ms is None


# ------------------------------------------------------------------------------- managers in one process


class Runs:
    def __init__(self) -> None:
        self.ticks: Counter[int] = Counter()

    def spec(self) -> DurableHandlerSpec[Any]:
        def run(ctx: TaskContext, payload: Any) -> None:
            self.ticks[int((ctx.task.metadata or {})[META_SCHEDULE_TICK])] += 1

        return DurableHandlerSpec(None, run)


def manager(redis_srv: RedisServer, prefix: str, runs: Runs, clock: Callable[[], float]) -> TaskManager:
    tm = TaskManager(
        durable_backend=RedisDurableBackend.from_url(redis_srv.url, prefix=prefix),
        durable_handlers={"tick": runs.spec()},
        durable_codec="json",
        durable_poll_interval=0.05,
        schedule_clock=clock,
    )
    tm.register_durable_cron_task(SCHEDULE, "* * * * * *", lambda: DurableTask("tick", {"n": 1}))
    return tm


async def stop(tm: TaskManager) -> None:
    """Stop the manager, then close its backend (an object passed in stays the caller's to close)."""
    await tm.stop_graceful()
    backend = tm.durable_backend()
    assert isinstance(backend, RedisDurableBackend)
    await backend.aclose()


def skewed(skew: float) -> Callable[[], float]:
    def clock() -> float:
        return time.time() + skew

    return clock


async def test_records_nobody_republished_expire(make_backend: MakeBackend, raw: Redis) -> None:
    nodes = [await make_backend() for _ in range(2)]
    keys = nodes[0].keys
    await nodes[1].publish_schedules([ScheduleRecord("kept", "@daily", "UTC", "default")])
    old_ms = int((time.time() - PUBLISHED_TTL_S - 1) * 1000)
    stale = {"name": "gone", "spec": "@hourly", "tz": "UTC", "queue": "default", "missed": "skip"}
    await raw.hset(keys.schedules, "gone", json.dumps({**stale, "published_ms": old_ms}))
    await raw.hset(keys.schedules, "unstamped", json.dumps({**stale, "name": "unstamped"}))  # an older version's
    assert [r.name for r in await nodes[0].list_schedules()] == ["kept", "unstamped"]  # not listed once expired
    await nodes[0].publish_schedules([])  # a node with no durable schedule left still prunes
    assert sorted(await raw.hkeys(keys.schedules)) == [b"kept", b"unstamped"]  # deleted by the publication


async def test_nodes_with_clocks_seconds_apart_enqueue_each_tick_once(
    redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    runs = Runs()
    nodes = [manager(redis_srv, prefix, runs, skewed(skew)) for skew in (-3.0, 0.0, 3.0)]
    for tm in nodes:
        await tm.start()
    try:
        await until(lambda: _ready(len(runs.ticks) >= 7), timeout=20)
        passed_by_all = int((time.time() - 3.0) // 1) * 1000 - 1000
    finally:
        for tm in nodes:
            await stop(tm)
    counts = enqueued_ticks(await raw.lrange(Keys.for_prefix(prefix).schedule_events(SCHEDULE), 0, -1))
    assert_once_without_gaps(counts, passed_by_all)
    assert set(runs.ticks.values()) == {1}


async def _ready(value: bool) -> bool:
    return value


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_restarted_node_does_not_enqueue_a_tick_already_fired(
    redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    runs = Runs()
    start = float(int(time.time())) + 0.5
    clock = ManualClock(start)
    first = manager(redis_srv, prefix, runs, clock)
    await first.start()
    clock.now = start + 2.0
    await until(lambda: _ready(len(runs.ticks) >= 2), timeout=15)
    await stop(first)  # its tasks ran and were acked: only the markers remember the ticks
    fired = dict(runs.ticks)
    clock.now = start  # back, with its clock where it was at the first start: the same ticks are due again
    second = manager(redis_srv, prefix, runs, clock)
    await second.start()
    clock.now = start + 2.0
    infos: list[ScheduleInfo] = []

    async def heard_duplicates() -> bool:
        infos[:] = await second.schedules()
        return infos[0].skipped >= 2

    await until(heard_duplicates, timeout=15)
    await stop(second)
    assert dict(runs.ticks) == fired
    assert infos[0].fired == 0
    counts = enqueued_ticks(await raw.lrange(Keys.for_prefix(prefix).schedule_events(SCHEDULE), 0, -1))
    assert counts == Counter(dict.fromkeys(fired, 1))


# ------------------------------------------------------------------------------------ the process fleet


@pytest.fixture
def fleet(redis_srv: RedisServer, prefix: str, tmp_path: Path) -> Iterator[ScheduleNodes]:
    fleet = ScheduleNodes(f"{redis_srv.url}?prefix={prefix}", tmp_path, plugins=("worker_redis.plugin",))
    yield fleet
    fleet.stop()


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


async def _wait_ready(log: Path) -> None:
    await until(lambda: _ready(any(p[0] == "READY" for p in _lines(log))), timeout=30, every=0.05)


async def test_three_processes_one_killed_and_restarted_enqueue_every_tick_once(
    fleet: ScheduleNodes, raw: Redis, prefix: str
) -> None:
    logs = [fleet.spawn() for _ in range(3)]
    for log in logs:
        await _wait_ready(log)
    events_key = Keys.for_prefix(prefix).schedule_events(SCHEDULE)

    async def ticks_enqueued(n: int) -> bool:
        return len(enqueued_ticks(await raw.lrange(events_key, 0, -1))) >= n

    await until(lambda: ticks_enqueued(8), timeout=30)
    victim = fleet.procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    await until(lambda: ticks_enqueued(11), timeout=30)  # the two others go on alone
    logs.append(fleet.spawn())
    await _wait_ready(logs[-1])
    await until(lambda: ticks_enqueued(20), timeout=40)
    end_ms = int(time.time() * 1000)
    fleet.stop()
    counts = enqueued_ticks(await raw.lrange(events_key, 0, -1))
    assert_once_without_gaps(counts)
    ran = {int(p[1]) for log in logs for p in _lines(log) if p[0] == "R"}
    settled = [t for t in counts if t < end_ms - 4_000]  # older than a lease (2 s) plus slack: run by now
    assert set(settled) <= ran, sorted(set(settled) - ran)
    assert len(counts) >= 20
    restarted = {p[2] for p in _lines(logs[-1]) if p[0] == "R"}
    assert restarted == {str(fleet.procs[-1].pid)} or not restarted  # the new process took part, or had no lease
