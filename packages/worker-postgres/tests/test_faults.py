"""Faults against real processes and a real server: SIGKILLed workers, a SIGSTOPped (stale) worker, a poison
task that kills every process running it, an immediate server restart, and transactional enqueue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from pg_helpers import rows, states, until
from worker_core.durable import DurableTask
from worker_core.errors import BackendUnavailableError
from worker_postgres import PostgresDurableBackend
from worker_postgres.testing import PostgresServer, postgres_server

WORKER = Path(__file__).with_name("fault_worker.py")
LEASE_S = 1.0


@dataclass
class Worker:
    log: Path
    process: subprocess.Popen[bytes]
    killed_at: float | None = None


@dataclass
class Fleet:
    url: str
    folder: Path
    work_ms: int = 20
    concurrency: int = 8
    workers: list[Worker] = field(default_factory=list)

    def spawn(self) -> Worker:
        log = self.folder / f"worker-{len(self.workers)}.log"
        argv = [str(WORKER), self.url, str(log), str(LEASE_S), str(self.work_ms), str(self.concurrency)]
        with log.with_suffix(".err").open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, *argv],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "WORKER_PLUGINS_AUTOLOAD": "0"},
            )
        worker = Worker(log, process)
        self.workers.append(worker)
        return worker

    def lines(self, worker: Worker) -> list[list[str]]:
        if not worker.log.exists():
            return []
        return [line.split() for line in worker.log.read_text().splitlines() if line.strip()]

    def started(self, worker: Worker) -> int:
        return sum(1 for parts in self.lines(worker) if parts[0] == "S")

    def kill(self, worker: Worker) -> None:
        worker.killed_at = time.time()
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                os.kill(worker.process.pid, signal.SIGCONT)
                worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)

    def completed(self) -> set[str]:
        return {parts[1] for w in self.workers for parts in self.lines(w) if parts[0] == "D"}

    def starts(self) -> dict[str, list[tuple[float, Worker]]]:
        out: dict[str, list[tuple[float, Worker]]] = defaultdict(list)
        for w in self.workers:
            for parts in self.lines(w):
                if parts[0] == "S":
                    out[parts[1]].append((float(parts[3]), w))
        return out


@pytest.fixture
async def producer(pg_url: str) -> PostgresDurableBackend:
    backend = PostgresDurableBackend.from_url(pg_url, pool_max=2)
    await backend.migrate()
    return backend


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(pg_url, tmp_path)
    yield fleet
    fleet.stop()


async def wait_ready(fleet: Fleet, worker: Worker) -> None:
    async def ready() -> bool:
        return any(parts[0] == "READY" for parts in fleet.lines(worker))

    await until(ready, timeout=30)


def report(line: str) -> None:
    """A figure for whoever runs the suite with ``-s``."""
    print(line)  # noqa: T201


def payloads(n: int, payload: object = 0) -> list[DurableTask]:
    return [DurableTask("work", payload=json.dumps(payload).encode(), id=uuid.uuid4()) for _ in range(n)]


async def test_a_killed_workers_lose_nothing_and_only_in_flight_tasks_run_twice(
    fleet: Fleet, producer: PostgresDurableBackend
) -> None:
    tasks = payloads(1500)
    ids = {str(t.id) for t in tasks}
    victims = [fleet.spawn(), fleet.spawn()]
    for w in victims:
        await wait_ready(fleet, w)
    try:
        await producer.enqueue_many(tasks)

        async def started_at_least(worker: Worker, n: int) -> bool:
            return fleet.started(worker) >= n

        await until(lambda: started_at_least(victims[0], 50))
        fleet.kill(victims[0])
        second = fleet.spawn()
        await wait_ready(fleet, second)
        floor = fleet.started(second) + 50
        await until(lambda: started_at_least(second, floor))
        fleet.kill(second)

        async def all_done() -> bool:
            return fleet.completed() >= ids

        await until(all_done, timeout=60)
        await until(lambda: _empty(producer))  # every task acked: none dead, none left behind
    finally:
        await producer.aclose()
    starts = fleet.starts()
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
    killed_logs = {parts[1] for w in killed for parts in fleet.lines(w) if parts[0] == "S"}
    assert duplicated <= killed_logs  # only tasks a killed process had taken ran twice
    assert set(in_flight) <= duplicated  # and every task cut short ran again
    slowest = 0.0
    for task_id, killed_at in in_flight.items():
        redelivered = min(t for t, _ in starts[task_id] if t > killed_at)
        slowest = max(slowest, redelivered - killed_at)
        assert redelivered - killed_at <= LEASE_S + 1.0, f"{task_id} redelivered after {redelivered - killed_at:.2f}s"
    report(f"\nworker kills: {len(ids)} tasks, 2 SIGKILLs, lost 0, ran twice {len(duplicated)}, slowest {slowest:.2f}s")


async def test_b_a_stopped_worker_cannot_settle_the_task_another_worker_now_holds(
    fleet: Fleet, producer: PostgresDurableBackend
) -> None:
    stale = fleet.spawn()
    await wait_ready(fleet, stale)
    try:
        [job] = payloads(1, {"sleep": 2.0})
        await producer.enqueue(job)
        await until(lambda: _async(fleet.started(stale) >= 1))
        os.kill(stale.process.pid, signal.SIGSTOP)  # frozen: no renewal, its 1 s lease runs out
        lease = None
        deadline = time.monotonic() + 15
        while lease is None and time.monotonic() < deadline:
            got = await producer.dequeue(1, 30.0)
            lease = got[0] if got else None
            if lease is None:
                await producer.wait_for_work(0.2)
        assert lease is not None
        assert lease.attempts == 2
        os.kill(stale.process.pid, signal.SIGCONT)

        async def stale_noticed() -> bool:
            return any(p[0] in ("ACK", "LOST") and p[1] == str(job.id) for p in fleet.lines(stale))

        await until(stale_noticed)
        settles = [p for p in fleet.lines(stale) if p[0] == "ACK" and p[1] == str(job.id)]
        assert all(p[2] == "lost" for p in settles)  # every settle it tried was refused
        assert await states(producer) == {str(job.id): "leased"}  # still the new holder's
        await producer.extend(lease, 30.0)
        await producer.ack(lease)
        assert await states(producer) == {}
    finally:
        await producer.aclose()


async def _async(value: bool) -> bool:
    return value


async def _empty(backend: PostgresDurableBackend) -> bool:
    """Every task acked: none dead, none left behind."""
    return await states(backend) == {}


async def test_c_a_task_that_kills_every_worker_ends_in_the_dlq_after_the_delivery_cap(
    fleet: Fleet, producer: PostgresDurableBackend
) -> None:
    poison = DurableTask("work", payload=b'"die"', id=uuid.uuid4(), retries=0)
    try:
        await producer.enqueue(poison)
        fleet.spawn()
        deadline = time.monotonic() + 60
        while (await states(producer)).get(str(poison.id)) != "dead":
            assert time.monotonic() < deadline, "the poison task never reached the DLQ"
            if all(w.process.poll() is not None for w in fleet.workers):
                fleet.spawn()  # a supervisor restarts the dead worker
            await asyncio.sleep(0.05)
        [(reason, attempts)] = await rows(producer, "SELECT last_error, attempts FROM {s}.tasks")
    finally:
        await producer.aclose()
    kills = [p for w in fleet.workers for p in fleet.lines(w) if p[0] == "K"]
    assert reason.startswith("delivery limit")
    assert len(kills) == attempts == 4  # retries 0 + 1 + the 3 extra deliveries, never a fifth


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


async def test_d_an_immediate_server_restart_mid_run_loses_no_accepted_task(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    url = f"{own_server.url}?schema=restart"
    producer = PostgresDurableBackend.from_url(url, pool_max=2, pool_timeout=2.0)
    await producer.migrate()
    fleet = Fleet(url, tmp_path)
    try:
        workers = [fleet.spawn(), fleet.spawn()]
        for w in workers:
            await wait_ready(fleet, w)
        first = payloads(800)
        await producer.enqueue_many(first)
        accepted = {str(t.id) for t in first}
        await until(lambda: _async(len(fleet.completed()) >= 100))
        await asyncio.to_thread(own_server.restart_immediate)
        assert len(fleet.completed()) < len(first)  # mid-run
        late = payloads(200)
        for attempt in range(100):  # the producer's first calls may meet connections the restart cut
            try:
                await producer.enqueue_many(late)
                break
            except BackendUnavailableError:
                assert attempt < 99
                await asyncio.sleep(0.1)
        accepted |= {str(t.id) for t in late}

        async def all_done() -> bool:
            return fleet.completed() >= accepted

        await until(all_done, timeout=60)
        assert all(w.process.poll() is None for w in workers)  # they resumed by themselves
        await until(lambda: _empty(producer))
        report(f"\nserver restart: {len(accepted)} tasks accepted, pg_ctl restart -m immediate mid-run, lost 0")
    finally:
        fleet.stop()
        await producer.aclose()


async def test_e_transactional_enqueue_runs_once_when_committed_and_never_when_rolled_back(
    fleet: Fleet, producer: PostgresDurableBackend, pg_url: str
) -> None:
    worker = fleet.spawn()
    await wait_ready(fleet, worker)
    [rolled_back, committed] = payloads(2)
    try:
        conninfo = producer.conninfo
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            async with conn.transaction(force_rollback=True):
                await producer.enqueue(rolled_back, connection=conn)
            async with conn.transaction():
                await conn.execute("SELECT 1")  # the caller's own work, in the same transaction
                await producer.enqueue(committed, connection=conn)

        async def ran() -> bool:
            return str(committed.id) in fleet.completed()

        await until(ran)
        await until(lambda: _empty(producer))
    finally:
        await producer.aclose()
    starts = fleet.starts()
    assert str(rolled_back.id) not in starts
    assert len(starts[str(committed.id)]) == 1
