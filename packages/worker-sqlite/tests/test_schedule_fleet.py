"""Three worker processes on one SQLite file run one 1-second schedule; one is SIGKILLed and started again.

Every tick is enqueued exactly once (the ``enqueued`` events the tick transaction writes, counted per tick) and
none is missing between the first and the last while at least one process was alive; every settled tick ran.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import rows, until
from worker_core.schedules import ScheduleEvent
from worker_core.testing.schedule_node import SCHEDULE, ScheduleNodes


def enqueued(path: Path) -> list[ScheduleEvent]:
    """The ``enqueued`` events the tick transaction wrote (one per tick it stored)."""
    out: list[ScheduleEvent] = []
    for (raw,) in rows(path, "SELECT data FROM schedule_events WHERE schedule = ?", SCHEDULE):
        event = ScheduleEvent.from_json(json.loads(raw))
        if event is not None and event.kind == "enqueued" and event.tick_ms is not None:
            out.append(event)
    return out


def enqueued_ticks(path: Path) -> Counter[int]:
    """Per tick, how many times it was enqueued."""
    return Counter(event.tick_ms for event in enqueued(path) if event.tick_ms is not None)


@pytest.fixture
def nodes(db_path: Path, tmp_path: Path) -> Iterator[ScheduleNodes]:
    fleet = ScheduleNodes(f"sqlite:///{db_path}", tmp_path, plugins=("worker_sqlite.plugin",))
    yield fleet
    fleet.stop()


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


async def _wait_ready(log: Path) -> None:
    await until(lambda: any(p[0] == "READY" for p in _lines(log)), timeout=30, every=0.05)


async def test_three_processes_one_killed_and_restarted_enqueue_every_tick_once(
    nodes: ScheduleNodes, db_path: Path
) -> None:
    logs = [nodes.spawn() for _ in range(3)]
    for log in logs:
        await _wait_ready(log)
    path = db_path
    await until(lambda: len(enqueued_ticks(path)) >= 6, timeout=30)
    victim = nodes.procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    killed_with = len(enqueued_ticks(path))
    await until(lambda: len(enqueued_ticks(path)) >= killed_with + 3, timeout=30)  # the two others go on alone
    logs.append(nodes.spawn())
    await _wait_ready(logs[-1])
    await until(lambda: len(enqueued_ticks(path)) >= 16, timeout=40)
    end_ms = int(time.time() * 1000)
    nodes.stop()
    counts = enqueued_ticks(path)
    doubled = {tick: n for tick, n in counts.items() if n != 1}
    assert not doubled, doubled
    missing = [t for t in range(min(counts), max(counts) + 1000, 1000) if t not in counts]
    assert not missing, (missing, sorted(counts))
    assert len(counts) >= 16
    ran = {int(p[1]) for log in logs for p in _lines(log) if p[0] == "R"}
    settled = [t for t in counts if t < end_ms - 4_000]  # older than a lease (2 s) plus slack: run by now
    assert set(settled) <= ran, sorted(set(settled) - ran)
