"""Faults against real processes and a real server: SIGKILLed workers, a SIGSTOPped (stale) worker, a poison
task that kills every process running it, an immediate server restart, and transactional enqueue."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pg_helpers import rows, states, until
from worker_core.durable import DurableTask
from worker_core.errors import BackendUnavailableError
from worker_core.testing import FaultFleet, check_at_least_once
from worker_postgres import PostgresDurableBackend
from worker_postgres.testing import PostgresServer, postgres_server

LEASE_S = 1.0


def pg_fleet(url: str, folder: Path) -> FaultFleet:
    return FaultFleet(url, folder, lease=LEASE_S, poll=0.2, plugins=("worker_postgres.plugin",))


@pytest.fixture
async def producer(pg_url: str) -> PostgresDurableBackend:
    backend = PostgresDurableBackend.from_url(pg_url, pool_max=2)
    await backend.migrate()
    return backend


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path) -> Iterator[FaultFleet]:
    with pg_fleet(pg_url, tmp_path) as fleet:
        yield fleet


def report(line: str) -> None:
    """A figure for whoever runs the suite with ``-s``."""
    print(line)  # noqa: T201


def payloads(n: int, payload: object = 0) -> list[DurableTask]:
    return [DurableTask("work", payload=json.dumps(payload).encode(), id=uuid.uuid4()) for _ in range(n)]


async def test_a_killed_workers_lose_nothing_and_only_in_flight_tasks_run_twice(
    fleet: FaultFleet, producer: PostgresDurableBackend
) -> None:
    tasks = payloads(1500)
    ids = {str(t.id) for t in tasks}
    victims = await fleet.spawn_ready(2)
    try:
        await producer.enqueue_many(tasks)
        await fleet.wait_for(lambda: fleet.count("S", victims[0]) >= 50)
        fleet.kill(victims[0])
        [second] = await fleet.spawn_ready()
        floor = fleet.count("S", second) + 50
        await fleet.wait_for(lambda: fleet.count("S", second) >= floor)
        fleet.kill(second)
        await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
        await until(lambda: _empty(producer))  # every task acked: none dead, none left behind
    finally:
        await producer.aclose()
    found = check_at_least_once(fleet, ids, redelivery_within=LEASE_S + 1.0)
    report(
        f"\nworker kills: {len(ids)} tasks, 2 SIGKILLs, lost 0, ran twice {len(found.duplicated)}, "
        f"slowest {found.slowest_redelivery_s:.2f}s"
    )


async def test_b_a_stopped_worker_cannot_settle_the_task_another_worker_now_holds(
    fleet: FaultFleet, producer: PostgresDurableBackend
) -> None:
    [stale] = await fleet.spawn_ready()
    try:
        [job] = payloads(1, {"sleep": 2.0})
        await producer.enqueue(job)
        await fleet.wait_for(lambda: fleet.count("S", stale) >= 1)
        fleet.signal(stale, signal.SIGSTOP)  # frozen: no renewal, its 1 s lease runs out
        lease = None
        deadline = time.monotonic() + 15
        while lease is None and time.monotonic() < deadline:
            got = await producer.dequeue(1, 30.0)
            lease = got[0] if got else None
            if lease is None:
                await producer.wait_for_work(0.2)
        assert lease is not None
        assert lease.attempts == 2
        fleet.signal(stale, signal.SIGCONT)
        await fleet.wait_for(
            lambda: any(r.kind in ("A", "L") and r.task_id == str(job.id) for r in fleet.records(worker=stale)), 15
        )
        settles = [r for r in fleet.records("A", stale) if r.task_id == str(job.id)]
        assert all(r.outcome == "lost" for r in settles)  # every settle it tried was refused
        assert await states(producer) == {str(job.id): "leased"}  # still the new holder's
        await producer.extend(lease, 30.0)
        await producer.ack(lease)
        assert await states(producer) == {}
    finally:
        await producer.aclose()


async def _empty(backend: PostgresDurableBackend) -> bool:
    """Every task acked: none dead, none left behind."""
    return await states(backend) == {}


async def test_c_a_task_that_kills_every_worker_ends_in_the_dlq_after_the_delivery_cap(
    fleet: FaultFleet, producer: PostgresDurableBackend
) -> None:
    poison = DurableTask("work", payload=b'"die"', id=uuid.uuid4(), retries=0)
    try:
        await producer.enqueue(poison)
        fleet.spawn()

        async def dead() -> bool:
            return (await states(producer)).get(str(poison.id)) == "dead"

        await fleet.supervise(dead, timeout=60)  # a supervisor restarts the dead worker
        [(reason, attempts)] = await rows(producer, "SELECT last_error, attempts FROM {s}.tasks")
    finally:
        await producer.aclose()
    assert reason.startswith("delivery limit")
    assert fleet.count("K") == attempts == 4  # retries 0 + 1 + the 3 extra deliveries, never a fifth


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
    fleet = pg_fleet(url, tmp_path)
    try:
        workers = await fleet.spawn_ready(2)
        first = payloads(800)
        await producer.enqueue_many(first)
        accepted = {str(t.id) for t in first}
        await fleet.wait_for(lambda: len(fleet.completed()) >= 100)
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
        await fleet.wait_for(lambda: fleet.completed() >= accepted, timeout=60)
        assert all(w.alive() for w in workers)  # they resumed by themselves
        await until(lambda: _empty(producer))
        report(f"\nserver restart: {len(accepted)} tasks accepted, pg_ctl restart -m immediate mid-run, lost 0")
    finally:
        fleet.stop()
        await producer.aclose()


async def test_e_transactional_enqueue_runs_once_when_committed_and_never_when_rolled_back(
    fleet: FaultFleet, producer: PostgresDurableBackend, pg_url: str
) -> None:
    await fleet.spawn_ready()
    [rolled_back, committed] = payloads(2)
    try:
        conninfo = producer.conninfo
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            async with conn.transaction(force_rollback=True):
                await producer.enqueue(rolled_back, connection=conn)
            async with conn.transaction():
                await conn.execute("SELECT 1")  # the caller's own work, in the same transaction
                await producer.enqueue(committed, connection=conn)
        await fleet.wait_for(lambda: str(committed.id) in fleet.completed())
        await until(lambda: _empty(producer))
    finally:
        await producer.aclose()
    starts = fleet.starts()
    assert str(rolled_back.id) not in starts
    assert len(starts[str(committed.id)]) == 1
