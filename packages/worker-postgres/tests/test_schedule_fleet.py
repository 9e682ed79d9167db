"""Three worker processes on one PostgreSQL schema run one 1-second schedule; one is SIGKILLed and started again.

Every tick is enqueued exactly once (the ``enqueued`` events the tick transaction writes, counted per tick) and
none is missing between the first and the last while at least one process was alive; every settled tick ran.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MakeBackend
from pg_helpers import until
from psycopg import AsyncConnection, sql
from worker_core.schedules import ScheduleEvent
from worker_core.testing.schedule_node import SCHEDULE, ScheduleNodes


async def enqueued(fleet: Nodes) -> list[ScheduleEvent]:
    """The ``enqueued`` events the tick transaction wrote (one per tick it stored), read on a connection of its own."""
    text = sql.SQL("SELECT data::text FROM {}.schedule_events WHERE schedule = %s")
    query = text.format(sql.Identifier(fleet.schema))
    async with await AsyncConnection.connect(fleet.conninfo, autocommit=True) as conn:
        raw_rows = await (await conn.execute(query, (SCHEDULE,))).fetchall()
    out: list[ScheduleEvent] = []
    for (raw,) in raw_rows:
        event = ScheduleEvent.from_json(json.loads(raw))
        if event is not None and event.kind == "enqueued" and event.tick_ms is not None:
            out.append(event)
    return out


async def enqueued_ticks(fleet: Nodes) -> Counter[int]:
    """Per tick, how many times it was enqueued."""
    return Counter(event.tick_ms for event in await enqueued(fleet) if event.tick_ms is not None)


@dataclass
class Nodes:
    """The schedule nodes, and where their schema is (read on a connection of the test's own)."""

    procs: ScheduleNodes
    conninfo: str
    schema: str


@pytest.fixture
async def nodes(make_backend: MakeBackend, pg_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    backend = await make_backend()  # migrates the test's schema
    fleet = ScheduleNodes(f"{pg_url}&pool_max=4", tmp_path, plugins=("worker_postgres.plugin",))
    yield Nodes(fleet, backend.conninfo, backend.schema)
    fleet.stop()


def _lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


async def _wait_ready(log: Path) -> None:
    async def ready() -> bool:
        return any(p[0] == "READY" for p in _lines(log))

    await until(ready, timeout=30, every=0.05)


def _ticks_at_least(fleet: Nodes, n: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(await enqueued_ticks(fleet)) >= n

    return probe


async def test_three_processes_one_killed_and_restarted_enqueue_every_tick_once(nodes: Nodes) -> None:
    logs = [nodes.procs.spawn() for _ in range(3)]
    for log in logs:
        await _wait_ready(log)
    await until(_ticks_at_least(nodes, 6), timeout=30)
    victim = nodes.procs.procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    killed_with = len(await enqueued_ticks(nodes))
    await until(_ticks_at_least(nodes, killed_with + 3), timeout=30)  # the two others go on alone
    logs.append(nodes.procs.spawn())
    await _wait_ready(logs[-1])
    await until(_ticks_at_least(nodes, 16), timeout=40)
    end_ms = int(time.time() * 1000)
    nodes.procs.stop()
    counts = await enqueued_ticks(nodes)
    doubled = {tick: n for tick, n in counts.items() if n != 1}
    assert not doubled, doubled
    missing = [t for t in range(min(counts), max(counts) + 1000, 1000) if t not in counts]
    assert not missing, (missing, sorted(counts))
    assert len(counts) >= 16
    ran = {int(p[1]) for log in logs for p in _lines(log) if p[0] == "R"}
    settled = [t for t in counts if t < end_ms - 4_000]  # older than a lease (2 s) plus slack: run by now
    assert set(settled) <= ran, sorted(set(settled) - ran)
