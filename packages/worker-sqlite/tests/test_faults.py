"""Faults against real worker processes on one SQLite file: SIGKILL, SIGSTOP past the lease, a task that
kills its process, many processes at once. Leases are 1 s so that the tests stay short."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import rows, task
from worker_core.testing import FaultFleet, check_at_least_once, check_exactly_once
from worker_sqlite import SqliteDurableBackend

LEASE_S = 1.0


@pytest.fixture
def fleet(db_path: Path, tmp_path: Path) -> Iterator[FaultFleet]:
    with FaultFleet(f"sqlite:///{db_path}", tmp_path, lease=LEASE_S, plugins=("worker_sqlite.plugin",)) as fleet:
        yield fleet


def no_tasks_left(path: Path) -> bool:
    return rows(path, "SELECT COUNT(*) FROM tasks") == [(0,)]


async def test_killed_workers_lose_nothing_and_only_in_flight_tasks_run_twice(fleet: FaultFleet, db_path: Path) -> None:
    tasks = [task(payload=b"%d" % i) for i in range(600)]
    ids = {str(t.id) for t in tasks}
    victims = await fleet.spawn_ready(2)
    async with SqliteDurableBackend(db_path) as producer:
        await producer.enqueue_many(tasks)
        await fleet.wait_for(lambda: fleet.count("S", victims[0]) >= 40)
        fleet.kill(victims[0])
        [second] = await fleet.spawn_ready()
        floor = fleet.count("S", second) + 40
        await fleet.wait_for(lambda: fleet.count("S", second) >= floor)
        fleet.kill(second)
        fleet.spawn()
        await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
        # The last acks commit just after their handlers logged: every task acked, none lost, none dead.
        await fleet.wait_for(lambda: no_tasks_left(db_path), timeout=20)
    check_at_least_once(fleet, ids, redelivery_within=LEASE_S + 1.0)


async def test_a_worker_stopped_past_its_lease_cannot_settle_the_task(fleet: FaultFleet, db_path: Path) -> None:
    [stale] = await fleet.spawn_ready()
    slow = task(payload=b'{"sleep": 3.0}')
    async with SqliteDurableBackend(db_path) as producer:
        await producer.enqueue(slow)
        await fleet.wait_for(lambda: fleet.count("S", stale) == 1)
        fleet.signal(stale, signal.SIGSTOP)  # a GC pause, a stalled VM: no renewal, no ack
        fresh = fleet.spawn()
        await fleet.wait_for(lambda: fleet.count("S", fresh) == 1, timeout=30)  # redelivered once the lease expired
        [fresh_start] = fleet.records("S", fresh)
        assert fresh_start.attempt >= 2  # a later delivery, with a new token
        fleet.signal(stale, signal.SIGCONT)
        await fleet.wait_for(lambda: fleet.count("A", fresh) == 1, timeout=30)
        # Resumed, the stale worker's renewal finds the lease gone and cancels its attempt (or its ack is refused).
        await fleet.wait_for(
            lambda: fleet.count("L", stale) + fleet.count("A", stale) > 0 or "lease lost" in stale.stderr(), timeout=10
        )
    assert [(r.task_id, r.outcome) for r in fleet.records("A", fresh)] == [(str(slow.id), "ok")]
    oks = Counter(r.task_id for r in fleet.records("A") if r.outcome == "ok")
    assert oks == Counter({str(slow.id): 1})  # no double ack
    assert no_tasks_left(db_path)


async def test_a_task_that_kills_its_process_ends_in_the_dlq_after_the_delivery_cap(
    fleet: FaultFleet, db_path: Path
) -> None:
    poison = task(payload=b'"die"', retries=0)
    # Leased in the same batches, the good tasks die with the poison's process up to 4 times too: retries=5
    # gives them a delivery limit of 9.
    good = [task(payload=b"%d" % i, retries=5) for i in range(20)]
    async with SqliteDurableBackend(db_path) as producer:
        await producer.enqueue_many([poison, *good])
        fleet.spawn()
        # It dies on the poison task: a supervisor restarts it, until the task is dead-lettered.
        dead = "SELECT 1 FROM tasks WHERE id = ? AND state = 'dead'"
        await fleet.supervise(lambda: rows(db_path, dead, str(poison.id)), timeout=60)
    ((error, attempts),) = rows(db_path, "SELECT last_error, attempts FROM tasks WHERE id = ?", str(poison.id))
    assert error.startswith("delivery limit")
    assert attempts == 4  # retries + 1 + the default 3 extra deliveries
    assert fleet.count("K") == 4
    await fleet.supervise(lambda: fleet.completed() >= {str(t.id) for t in good}, timeout=30)  # the others all ran


async def test_many_processes_on_one_file_never_share_a_lease(fleet: FaultFleet, db_path: Path) -> None:
    fleet.lease = 30.0  # nothing expires: any second start would be a shared lease
    workers = await fleet.spawn_ready(4)
    tasks = [task(payload=b"%d" % i) for i in range(800)]
    ids = {str(t.id) for t in tasks}
    async with SqliteDurableBackend(db_path) as producer:
        for first in range(0, len(tasks), 100):  # while the workers run, as a producer would
            await producer.enqueue_many(tasks[first : first + 100])
        await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
    check_exactly_once(fleet, ids)
    assert sum(1 for w in workers if fleet.count("S", w)) >= 2  # the work really was shared
