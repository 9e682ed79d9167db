"""Durable schedules on the in-memory backend: several managers in one process share it, as nodes share Redis.

Every tick must be enqueued exactly once whatever the number of nodes, their clock skew, or a restart; run
requests are taken by one node; pause is shared; ``missed="once"`` catches the latest missed tick up once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from core_helpers import GUARD, until
from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_core.schedules import (
    META_SCHEDULE_TICK,
    PUBLISHED_TTL_S,
    MissedPolicy,
    ScheduleRecord,
    runner,
    tick_task_id,
)
from worker_core.testing import FakeClock, InMemoryDurableBackend

SCHEDULE = "every-second"


class Ticks:
    """Counts the runs of every tick's task, whichever manager ran it."""

    def __init__(self) -> None:
        self.runs: Counter[int] = Counter()
        self.manual = 0
        self.changed = asyncio.Event()

    def handler(self) -> DurableHandlerSpec[Any]:
        def run(ctx: TaskContext, payload: Any) -> None:
            metadata = ctx.task.metadata or {}
            if META_SCHEDULE_TICK in metadata:
                self.runs[int(metadata[META_SCHEDULE_TICK])] += 1
            else:
                self.manual += 1
            self.changed.set()

        return DurableHandlerSpec(None, run)


def node(
    backend: InMemoryDurableBackend, ticks: Ticks, clock: Callable[[], float] | None = None, **kw: Any
) -> TaskManager:
    tm = TaskManager(
        durable_backend=backend,
        durable_handlers={"tick": ticks.handler()},
        durable_poll_interval=0.05,
        schedule_clock=clock,
    )
    tm.register_durable_cron_task(SCHEDULE, "* * * * * *", lambda: DurableTask("tick", {"n": 1}), **kw)
    return tm


def contiguous(runs: Counter[int], backend: InMemoryDurableBackend, until_ms: int | None = None) -> None:
    """Each tick ran once, and no tick between the first and the last (or ``until_ms``) is missing.

    A tick whose task was still stored when the nodes stopped (its lease handed back by a graceful stop) counts
    as enqueued: it is in the backend, once (its id is the tick's). With skewed clocks, a tick a node ahead has not
    fired yet (it started after it) is fired later by a node behind: ``until_ms`` is what every clock has passed.
    """
    assert runs, runs
    assert set(runs.values()) == {1}, runs
    every = range(min(runs), (until_ms or max(runs)) + 1000, 1000)
    missing = [t for t in every if t not in runs and backend.get(tick_task_id(SCHEDULE, t)) is None]
    assert not missing, (missing, sorted(runs))


async def test_three_managers_enqueue_each_tick_once() -> None:
    backend = InMemoryDurableBackend()
    ticks = Ticks()
    nodes = [node(backend, ticks) for _ in range(3)]
    for tm in nodes:
        await tm.start()
    try:
        await until(lambda: len(ticks.runs) >= 4, GUARD)
        infos = [(await tm.schedules())[0] for tm in nodes]
    finally:
        for tm in nodes:
            await tm.stop_graceful()
    contiguous(ticks.runs, backend)
    assert sum(info.fired for info in infos) >= 4  # each tick counted as fired on the node that won it
    assert infos[0].durable
    assert infos[0].last_outcome == "enqueued"
    assert sum(info.skipped for info in infos) >= 2 * 4 - 2  # the others heard "duplicate"


async def test_clock_skew_of_a_few_seconds_gives_no_duplicate_and_no_gap() -> None:
    backend = InMemoryDurableBackend()
    ticks = Ticks()
    skews = (-2.5, 0.0, 2.5)
    nodes = [node(backend, ticks, clock=skewed(skew)) for skew in skews]
    for tm in nodes:
        await tm.start()
    try:
        await until(lambda: len(ticks.runs) >= 8, GUARD)
        passed_by_all = int((time.time() - 2.5) // 1) * 1000 - 1000
    finally:
        for tm in nodes:
            await tm.stop_graceful()
    contiguous(ticks.runs, backend, passed_by_all)


def skewed(skew: float) -> Callable[[], float]:
    def clock() -> float:
        return time.time() + skew

    return clock


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_restart_with_a_clock_behind_refires_nothing() -> None:
    backend = InMemoryDurableBackend()
    ticks = Ticks()
    start = float(int(time.time())) + 0.5
    clock = ManualClock(start)
    first = node(backend, ticks, clock)
    await first.start()
    clock.now = start + 2.0  # ticks start+0.5 .. start+1.5 are due
    await until(lambda: len(ticks.runs) >= 2, GUARD)
    await first.stop_graceful()
    fired = dict(ticks.runs)
    clock.now = start  # the node comes back with its clock 2 s behind: it sees the same two ticks again
    second = node(backend, ticks, clock)
    await second.start()
    clock.now = start + 2.0
    await until(lambda: second._engine.schedules.entry(SCHEDULE).skipped >= 2, GUARD)
    await second.stop_graceful()
    assert dict(ticks.runs) == fired
    assert set(fired.values()) == {1}
    assert backend.get(tick_task_id(SCHEDULE, min(fired))) is None  # ran and acked once, not stored again


@pytest.mark.parametrize("missed", ["once", "skip"])
async def test_missed_once_catches_up_the_latest_missed_tick_and_skip_does_not(missed: MissedPolicy) -> None:
    backend = InMemoryDurableBackend()
    ticks = Ticks()
    start = float(int(time.time())) + 0.5
    clock = ManualClock(start)
    first = node(backend, ticks, clock, missed=missed)
    await first.start()
    clock.now = start + 1.0
    await until(lambda: len(ticks.runs) >= 1, GUARD)
    await first.stop_graceful()
    last = max(ticks.runs)
    clock.now = start + 30.2  # every node was down for ~30 ticks
    second = node(backend, ticks, clock, missed=missed)
    await second.start()
    latest = int((start + 30.2) // 1) * 1000
    if missed == "once":
        await until(lambda: latest in ticks.runs, GUARD)
    await second.stop_graceful()  # with "skip", the loop fired nothing: the next tick is 0.8 s away
    assert set(ticks.runs) == ({last, latest} if missed == "once" else {last})


async def test_trigger_is_taken_by_exactly_one_node_and_pause_is_shared() -> None:
    backend = InMemoryDurableBackend()
    ticks = Ticks()
    nodes = [node(backend, ticks) for _ in range(3)]
    for tm in nodes:
        tm.register_durable_cron_task("yearly", "@yearly", lambda: DurableTask("tick", {"n": 2}))
        await tm.start()
    try:
        await nodes[1].trigger_schedule("yearly")
        await until(lambda: ticks.manual >= 1, GUARD)
        await nodes[0].pause_schedule(SCHEDULE)
        paused_at = len(ticks.runs)
        await until(lambda: all(tm._engine.schedules.entry(SCHEDULE).skipped >= 4 for tm in nodes), GUARD)
        assert len(ticks.runs) <= paused_at + 1  # a tick already stored when the pause landed may still run
        infos = [(await tm.schedules())[0] for tm in nodes]
        assert all(info.paused for info in infos)
        await nodes[2].resume_schedule(SCHEDULE)
        await until(lambda: len(ticks.runs) >= paused_at + 2, GUARD)
        events = await nodes[0].schedule_events("yearly")
    finally:
        for tm in nodes:
            await tm.stop_graceful()
    assert ticks.manual == 1
    assert [e.kind for e in events] == ["triggered"]
    listed = await backend.list_schedules()
    assert {r.name for r in listed} == {SCHEDULE, "yearly"}


async def test_published_records_expire_unless_republished(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    backend = InMemoryDurableBackend(clock=clock)
    await backend.publish_schedules([ScheduleRecord("gone", "@hourly", "UTC", "default")])
    clock.advance(PUBLISHED_TTL_S - 10)
    await backend.publish_schedules([ScheduleRecord("kept", "@daily", "UTC", "default")])
    assert [r.name for r in await backend.list_schedules()] == ["gone", "kept"]
    clock.advance(20)  # "gone" was published over the TTL ago, "kept" 20 s ago
    assert [r.name for r in await backend.list_schedules()] == ["kept"]

    # a running node republishes its schedules periodically, not only when they change
    monkeypatch.setattr(runner, "REPUBLISH_S", 0.0)
    node_clock = FakeClock()
    shared = InMemoryDurableBackend(clock=node_clock)
    async with node(shared, Ticks()):
        for _ in range(2):
            await until(lambda: [r.name for r in shared.schedule_state.listed()] == [SCHEDULE])
            node_clock.advance(PUBLISHED_TTL_S + 1)
            assert shared.schedule_state.listed() == []  # expired: listed again only once republished
        await until(lambda: [r.name for r in shared.schedule_state.listed()] == [SCHEDULE])
