"""Faults against real worker processes on one SQLite file: SIGKILL, SIGSTOP past the lease, a task that
kills its process, many processes at once. Leases are 1 s so that the tests stay short."""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Fleet, Worker, rows, task, until, with_signal
from worker_sqlite import SqliteDurableBackend

LEASE_S = 1.0


@pytest.fixture
def fleet(db_path: Path, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(db_path, tmp_path, lease=LEASE_S)
    yield fleet
    fleet.stop()


async def started_all(fleet: Fleet, *workers: Worker) -> None:
    try:
        await until(lambda: all(fleet.ready(w) for w in workers), timeout=30)
    except AssertionError as exc:  # say what the workers said: a start that never finished is hard to debug
        stderr = {
            w.process.pid: (w.process.poll(), w.log.with_suffix(".err").read_text(errors="replace")[-2000:])
            for w in workers
        }
        raise AssertionError(f"{exc}; workers (pid: (exit code, stderr)): {stderr}") from None


async def test_killed_workers_lose_nothing_and_only_in_flight_tasks_run_twice(fleet: Fleet) -> None:
    tasks = [task(payload=b"%d" % i) for i in range(600)]
    ids = {str(t.id) for t in tasks}
    victims = [fleet.spawn(), fleet.spawn()]
    await started_all(fleet, *victims)
    async with SqliteDurableBackend(fleet.path) as producer:
        await producer.enqueue_many(tasks)
        await until(lambda: fleet.count(victims[0], "S") >= 40)
        fleet.kill(victims[0])
        second = fleet.spawn()
        await started_all(fleet, second)
        floor = fleet.count(second, "S") + 40
        await until(lambda: fleet.count(second, "S") >= floor)
        fleet.kill(second)
        fleet.spawn()
        await until(lambda: fleet.completed() >= ids, timeout=60)
        # The last acks commit just after their handlers logged: every task acked, none lost, none dead.
        await until(lambda: rows(fleet.path, "SELECT COUNT(*) FROM tasks") == [(0,)], timeout=20)

    starts: dict[str, list[float]] = defaultdict(list)
    for parts, _w in fleet.all_lines("S"):
        starts[parts[1]].append(float(parts[3]))
    killed = [w for w in fleet.workers if w.killed_at is not None]
    in_flight: dict[str, float] = {}
    for w in killed:
        done_here = {parts[1] for parts in fleet.lines(w) if parts[0] == "D"}
        for parts in fleet.lines(w):
            if parts[0] == "S" and parts[1] not in done_here:
                assert w.killed_at is not None
                in_flight[parts[1]] = w.killed_at
    assert in_flight, "the kills should have caught tasks mid-run"
    duplicated = {task_id for task_id, s in starts.items() if len(s) > 1}
    taken_by_killed = {parts[1] for w in killed for parts in fleet.lines(w) if parts[0] == "S"}
    assert duplicated <= taken_by_killed  # only tasks a killed process had started ran twice
    assert set(in_flight) <= duplicated  # and every task cut short ran again
    for task_id, killed_at in in_flight.items():
        redelivered = min(t for t in starts[task_id] if t > killed_at)
        assert redelivered - killed_at <= LEASE_S + 1.0, f"{task_id} redelivered {redelivered - killed_at:.2f}s late"


async def test_a_worker_stopped_past_its_lease_cannot_settle_the_task(fleet: Fleet) -> None:
    stale = fleet.spawn()
    await started_all(fleet, stale)
    slow = task(payload=b'"slow"')
    async with SqliteDurableBackend(fleet.path) as producer:
        await producer.enqueue(slow)
        await until(lambda: fleet.count(stale, "S") == 1)
        with_signal(stale.process, signal.SIGSTOP)  # a GC pause, a stalled VM: no renewal, no ack
        fresh = fleet.spawn()
        await until(lambda: fleet.count(fresh, "S") == 1, timeout=30)  # redelivered once the lease expired
        (fresh_start,) = [parts for parts in fleet.lines(fresh) if parts[0] == "S"]
        assert int(fresh_start[2]) >= 2  # a later delivery, with a new token
        with_signal(stale.process, signal.SIGCONT)
        await until(lambda: fleet.count(fresh, "A") == 1, timeout=30)
        # Resumed, the stale worker's renewal finds the lease gone and cancels its attempt (or its ack is refused).
        err = stale.log.with_suffix(".err")
        await until(lambda: "lease lost" in err.read_text() or fleet.count(stale, "A") > 0, timeout=10)
    acks = [(parts[1], parts[2]) for parts, _w in fleet.all_lines("A")]
    assert (str(slow.id), "ok") in [(parts[1], parts[2]) for parts in fleet.lines(fresh) if parts[0] == "A"]
    assert Counter(a for a in acks if a[1] == "ok") == Counter({(str(slow.id), "ok"): 1})  # no double ack
    assert rows(fleet.path, "SELECT COUNT(*) FROM tasks") == [(0,)]


async def test_a_task_that_kills_its_process_ends_in_the_dlq_after_the_delivery_cap(fleet: Fleet) -> None:
    poison = task(payload=b'"die"', retries=0)
    # Leased in the same batches, the good tasks die with the poison's process up to 4 times too: retries=5
    # gives them a delivery limit of 9.
    good = [task(payload=b"%d" % i, retries=5) for i in range(20)]
    async with SqliteDurableBackend(fleet.path) as producer:
        await producer.enqueue_many([poison, *good])
        current = fleet.spawn()
        deadline = time.monotonic() + 60
        while not rows(fleet.path, "SELECT 1 FROM tasks WHERE id = ? AND state = 'dead'", str(poison.id)):
            assert time.monotonic() < deadline, "the poison task never reached the DLQ"
            if current.process.poll() is not None:  # it died on the poison task: a supervisor restarts it
                current = fleet.spawn()
            await until(lambda: True)
    ((error, attempts),) = rows(fleet.path, "SELECT last_error, attempts FROM tasks WHERE id = ?", str(poison.id))
    assert error.startswith("delivery limit")
    assert attempts == 4  # retries + 1 + the default 3 extra deliveries
    assert len(fleet.all_lines("K")) == 4
    if current.process.poll() is not None:
        fleet.spawn()
    await until(lambda: fleet.completed() >= {str(t.id) for t in good}, timeout=30)  # the others all ran


async def test_many_processes_on_one_file_never_share_a_lease(fleet: Fleet) -> None:
    fleet.lease = 30.0  # nothing expires: any second start would be a shared lease
    workers = [fleet.spawn() for _ in range(4)]
    await started_all(fleet, *workers)
    tasks = [task(payload=b"%d" % i) for i in range(800)]
    async with SqliteDurableBackend(fleet.path) as producer:
        for first in range(0, len(tasks), 100):  # while the workers run, as a producer would
            await producer.enqueue_many(tasks[first : first + 100])
        await until(lambda: fleet.completed() >= {str(t.id) for t in tasks}, timeout=60)
    starts = Counter(parts[1] for parts, _w in fleet.all_lines("S"))
    assert set(starts) == {str(t.id) for t in tasks}
    assert max(starts.values()) == 1
    assert sum(1 for w in workers if fleet.count(w, "S")) >= 2  # the work really was shared
