"""Faults, each against real processes and a real redis-server: killed workers, a killed Redis, failing
handlers, poison payloads and stale workers. Leases are short (1 s) so that the tests stay fast."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import until
from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask, DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import BackendUnavailableError, LeaseLostError
from worker_redis import Keys, RedisDurableBackend
from worker_redis._records import now_ms
from worker_redis.testing import RedisServer, redis_server

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
    prefix: str
    folder: Path
    work_ms: int = 20
    concurrency: int = 8
    renewal: str | None = None  # "default": the manager's own lease renewal; None: a quarter of the lease
    workers: list[Worker] = field(default_factory=list)

    def spawn(self) -> Worker:
        log = self.folder / f"worker-{len(self.workers)}.log"
        argv = [str(WORKER), self.url, self.prefix, str(log), str(LEASE_S), str(self.work_ms), str(self.concurrency)]
        if self.renewal is not None:
            argv.append(self.renewal)
        with log.with_suffix(".err").open("wb") as err:  # the worker's warnings, for whoever debugs a failure
            process = subprocess.Popen(
                [sys.executable, *argv],
                stdout=subprocess.DEVNULL,
                stderr=err,
                # Only the plugins the worker uses: loading every installed one at the first task (worker-grpc
                # imports grpc and protobuf) blocks the loop long enough, on a loaded machine, to lose a 1 s lease.
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
                worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)

    def completed(self) -> set[str]:
        return {parts[1] for w in self.workers for parts in self.lines(w) if parts[0] == "D"}


@pytest.fixture
def fleet(redis_srv: RedisServer, prefix: str, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(redis_srv.url, prefix, tmp_path)
    yield fleet
    fleet.stop()


async def wait_ready(fleet: Fleet, worker: Worker) -> None:
    async def ready() -> bool:
        return any(parts[0] == "READY" for parts in fleet.lines(worker))

    await until(ready, timeout=30)


def report(line: str) -> None:
    """A figure for bench/README.md: shown with ``pytest -s``."""
    print(line)  # noqa: T201 - the test's measurement, read by whoever runs it with -s


def payloads(n: int) -> list[DurableTask]:
    return [DurableTask("work", payload=b"%d" % i, id=uuid.uuid4()) for i in range(n)]


async def test_a_killed_worker_loses_nothing_and_only_its_in_flight_tasks_run_twice(fleet: Fleet) -> None:
    tasks = payloads(3000)
    ids = {str(t.id) for t in tasks}
    victims = [fleet.spawn(), fleet.spawn(), fleet.spawn()]
    for w in victims:
        await wait_ready(fleet, w)
    async with RedisDurableBackend.from_url(fleet.url, prefix=fleet.prefix) as producer:
        await producer.enqueue_many(tasks)
        # Kill worker 0 mid-task, restart it, then kill the restarted one mid-task too.
        await until(lambda: _at_least(fleet, victims[0], 50))
        fleet.kill(victims[0])
        second = fleet.spawn()
        await wait_ready(fleet, second)
        floor = fleet.started(second) + 50
        await until(lambda: _at_least(fleet, second, floor))
        fleet.kill(second)
        fleet.spawn()

        async def all_done() -> bool:
            return fleet.completed() >= ids

        await until(all_done, timeout=60)
        keys = Keys.for_prefix(fleet.prefix)
        client: Redis = producer.client
        assert await client.zcard(keys.ready("default")) == 0
        assert await client.llen(keys.dead) == 0

    starts: dict[str, list[tuple[float, Worker]]] = defaultdict(list)
    for w in fleet.workers:
        for parts in fleet.lines(w):
            if parts[0] == "S":
                starts[parts[1]].append((float(parts[3]), w))
    killed = [w for w in fleet.workers if w.killed_at is not None]
    assert len(killed) == 2
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
        redelivered = min(t for t, w in starts[task_id] if t > killed_at)
        slowest = max(slowest, redelivered - killed_at)
        assert redelivered - killed_at <= LEASE_S + 1.0, f"{task_id} redelivered after {redelivered - killed_at:.2f}s"
    report(
        f"\nworker kills: {len(ids)} tasks, {len(killed)} SIGKILLs, lost 0, ran twice {len(duplicated)} "
        f"(all in flight at a kill), slowest redelivery {slowest:.2f} s after the kill on {LEASE_S:.0f} s leases"
    )


async def _at_least(fleet: Fleet, worker: Worker, n: int) -> bool:
    return fleet.started(worker) >= n


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


async def test_b_redis_killed_and_restarted_loses_no_accepted_task(aof_server: RedisServer, tmp_path: Path) -> None:
    fleet = Fleet(aof_server.url, "aof", tmp_path)
    try:
        workers = [fleet.spawn(), fleet.spawn()]
        for w in workers:
            await wait_ready(fleet, w)
        accepted: set[str] = set()
        async with RedisDurableBackend.from_url(aof_server.url, prefix="aof") as producer:
            first = payloads(1000)
            await producer.enqueue_many(first)
            accepted |= {str(t.id) for t in first}
            await until(lambda: _any_completed(fleet, 100))
            aof_server.kill()
            assert len(fleet.completed()) < len(first)  # mid-run
            # While Redis is down an enqueue is refused (not accepted), never silently dropped.
            late = payloads(200)
            with pytest.raises(BackendUnavailableError):
                await producer.enqueue(late[0])
            await asyncio.sleep(0.5)
            aof_server.start()
            await producer.enqueue_many(late)
            accepted |= {str(t.id) for t in late}

            async def all_done() -> bool:
                return fleet.completed() >= accepted

            await until(all_done, timeout=60)
        assert all(w.process.poll() is None for w in workers)  # they resumed by themselves
        report(f"\nredis kill: {len(accepted)} tasks accepted, 1 Redis SIGKILL and restart (AOF always), lost 0")
    finally:
        fleet.stop()


async def _any_completed(fleet: Fleet, n: int) -> bool:
    return len(fleet.completed()) >= n


# -- in-process faults ------------------------------------------------------------------------------


@pytest.fixture
async def backend(redis_srv: RedisServer, prefix: str) -> AsyncIterator[RedisDurableBackend]:
    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    yield backend
    await backend.aclose()


def manager(backend: Any, fn: Any, **options: Any) -> TaskManager:
    settings: dict[str, Any] = {
        "max_workers": 4,
        "tasks_per_second": None,
        "max_retries": 5,
        "retry_delay": 0.01,
        "durable_backend": backend,
        "durable_handlers": {"work": DurableHandlerSpec(None, fn)},
        "durable_codec": "json",
        "durable_poll_interval": 0.05,
    }
    settings.update(options)
    return TaskManager(**settings)


async def test_c_always_failing_task_is_dead_lettered_after_retries_plus_one(
    backend: RedisDurableBackend, raw: Redis
) -> None:
    calls: list[int] = []

    async def always_fails(ctx: TaskContext, payload: object) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError(f"failure #{len(calls)}")

    async with manager(backend, always_fails) as tm:
        task_id = await tm.register_durable_task(DurableTask("work", 1, retries=2, retry_delay=0.01))
        await until(lambda: raw.lrange(backend.keys.dead, 0, -1))
    assert len(calls) == 3
    record = await raw.hgetall(backend.keys.task(str(task_id)))
    assert record[b"attempts"] == b"3"
    assert b"failure #3" in record[b"last_error"]
    assert record[b"error_type"] == b"RuntimeError"
    assert b"Traceback (most recent call last)" in record[b"error_traceback"]
    assert b"in always_fails" in record[b"error_traceback"]
    assert b'raise RuntimeError(f"failure #{len(calls)}")' in record[b"error_traceback"]


async def test_d_poison_payload_is_dead_lettered_at_once_with_the_reason(
    backend: RedisDurableBackend, raw: Redis
) -> None:
    calls: list[object] = []

    async def work(ctx: TaskContext, payload: object) -> None:
        calls.append(payload)

    poison = DurableTask("work", payload=b"\xff{not json", id=uuid.uuid4(), retries=3)
    unknown = DurableTask("nobody", payload=b"1", id=uuid.uuid4(), retries=3)
    known_nowhere = DurableTask("nobody", payload=b"2", id=uuid.uuid4(), retries=3)
    await backend.enqueue_many([poison, unknown, known_nowhere])
    # Two nodes without the handler already put this one back: its third delivery dead-letters it.
    await raw.hset(backend.keys.task(str(known_nowhere.id)), "attempts", 2)
    started = now_ms()
    async with manager(backend, work):

        async def settled() -> bool:
            ready_at = await raw.zscore(backend.keys.ready("default"), str(unknown.id))
            return int(await raw.llen(backend.keys.dead)) == 2 and ready_at is not None and ready_at > started

        await until(settled)
    assert calls == []
    poison_record = await raw.hgetall(backend.keys.task(str(poison.id)))
    assert poison_record[b"attempts"] == b"1"
    assert b"undecodable payload" in poison_record[b"last_error"]
    nowhere_record = await raw.hgetall(backend.keys.task(str(known_nowhere.id)))
    assert b"not registered" in nowhere_record[b"last_error"]
    # A handler this node does not know may be known by a newer node (a rolling deploy): put back, 10 s later.
    unknown_record = await raw.hgetall(backend.keys.task(str(unknown.id)))
    assert b"last_error" not in unknown_record
    assert int(unknown_record[b"ready_at_ms"]) >= started + 10_000


class RecordingBackend(RedisDurableBackend):
    """The real backend, with the outcome of every ack kept."""

    acks: list[tuple[str, str]]

    async def ack(self, lease: DurableTaskLease) -> None:
        await self._record(lease, super().ack(lease))

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        await self._record(lease, super().ack_with_outcome(lease, outcome, ttl))

    async def _record(self, lease: DurableTaskLease, call: Awaitable[None]) -> None:
        try:
            await call
        except LeaseLostError:
            self.acks.append((lease.lease_id, "lost"))
            raise
        self.acks.append((lease.lease_id, "ok"))


async def test_e_stale_worker_cannot_ack_the_task_another_worker_holds(
    redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    stale_backend = RecordingBackend.from_url(redis_srv.url, prefix=prefix)
    fresh_backend = RecordingBackend.from_url(redis_srv.url, prefix=prefix)
    stale_backend.acks, fresh_backend.acks = [], []
    release_stale = asyncio.Event()
    fresh_started = asyncio.Event()
    release_fresh = asyncio.Event()

    async def slow(ctx: TaskContext, payload: object) -> None:
        await release_stale.wait()  # outlives its 0.3 s lease: no renewal on this node

    async def held(ctx: TaskContext, payload: object) -> None:
        fresh_started.set()
        await release_fresh.wait()

    # One worker: while it is busy the stale node leases nothing, so the redelivery goes to the fresh node.
    stale = manager(stale_backend, slow, max_workers=1, durable_lease=0.3, durable_lease_renewal_interval=0)
    fresh = manager(fresh_backend, held, durable_lease=30.0)
    try:
        async with stale:
            task_id = await stale.register_durable_task(DurableTask("work", 1))
            await until(lambda: raw.zscore(stale_backend.keys.processing("default"), str(task_id)))
            async with fresh:
                async with asyncio.timeout(10):
                    await fresh_started.wait()  # redelivered to the fresh worker after the stale lease expired
                release_stale.set()

                async def stale_settled() -> bool:
                    return bool(stale_backend.acks)

                await until(stale_settled)
                assert stale_backend.acks == [(str(task_id), "lost")]
                assert await raw.exists(stale_backend.keys.task(str(task_id)))  # the fresh holder still has it
                release_fresh.set()

                async def fresh_settled() -> bool:
                    return bool(fresh_backend.acks)

                await until(fresh_settled)
        assert fresh_backend.acks == [(str(task_id), "ok")]
        assert not await raw.exists(stale_backend.keys.task(str(task_id)))
    finally:
        await stale_backend.aclose()
        await fresh_backend.aclose()
