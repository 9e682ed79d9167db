"""Faults, each against real processes and a real redis-server: killed workers, a killed Redis, failing
handlers, poison payloads and stale workers. Leases are short (1 s) so that the tests stay fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import until
from worker_core import ManagerState, TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask, DurableTaskLease
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import BackendUnavailableError, DurableTaskExistsError, LeaseLostError
from worker_core.testing import FaultFleet, check_at_least_once
from worker_redis import Keys, RedisDurableBackend
from worker_redis._records import now_ms
from worker_redis.testing import RedisServer, redis_server

LEASE_S = 1.0
PLUGINS = ("worker_redis.plugin",)


def redis_fleet(url: str, prefix: str, folder: Path, **options: Any) -> FaultFleet:
    """Worker processes on ``url`` under ``prefix``, with only the Redis plugin loaded.

    Loading every installed plugin (worker-grpc imports grpc and protobuf) costs each worker seconds of CPU on a
    loaded machine; the workers resolve their backend before they log READY either way.
    """
    return FaultFleet(f"{url}?prefix={prefix}", folder, lease=LEASE_S, plugins=PLUGINS, **options)


@pytest.fixture
def fleet(redis_srv: RedisServer, prefix: str, tmp_path: Path) -> Iterator[FaultFleet]:
    with redis_fleet(redis_srv.url, prefix, tmp_path) as fleet:
        yield fleet


def producer_for(fleet: FaultFleet) -> RedisDurableBackend:
    return RedisDurableBackend.from_url(fleet.url)


def report(line: str) -> None:
    """A figure for bench/README.md: shown with ``pytest -s``."""
    print(line)  # noqa: T201 - the test's measurement, read by whoever runs it with -s


def payloads(n: int) -> list[DurableTask]:
    return [DurableTask("work", payload=b"%d" % i, id=uuid.uuid4()) for i in range(n)]


async def test_a_killed_worker_loses_nothing_and_only_its_in_flight_tasks_run_twice(
    fleet: FaultFleet, prefix: str
) -> None:
    tasks = payloads(3000)
    ids = {str(t.id) for t in tasks}
    victims = await fleet.spawn_ready(3)
    async with producer_for(fleet) as producer:
        await producer.enqueue_many(tasks)
        # Kill worker 0 mid-task, restart it, then kill the restarted one mid-task too.
        await fleet.wait_for(lambda: fleet.count("S", victims[0]) >= 50)
        fleet.kill(victims[0])
        [second] = await fleet.spawn_ready()
        floor = fleet.count("S", second) + 50
        await fleet.wait_for(lambda: fleet.count("S", second) >= floor)
        fleet.kill(second)
        fleet.spawn()
        await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
        keys = Keys.for_prefix(prefix)
        client: Redis = producer.client
        assert await client.zcard(keys.ready("default")) == 0
        assert await client.llen(keys.dead) == 0
    assert len(fleet.killed()) == 2
    found = check_at_least_once(fleet, ids, redelivery_within=LEASE_S + 1.0)
    report(
        f"\nworker kills: {len(ids)} tasks, 2 SIGKILLs, lost 0, ran twice {len(found.duplicated)} "
        f"(all in flight at a kill), slowest redelivery {found.slowest_redelivery_s:.2f} s after the kill on "
        f"{LEASE_S:.0f} s leases"
    )


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server("--appendonly", "yes", "--appendfsync", "always") as server:
        yield server


async def test_b_redis_killed_and_restarted_loses_no_accepted_task(aof_server: RedisServer, tmp_path: Path) -> None:
    with redis_fleet(aof_server.url, "aof", tmp_path) as fleet:
        workers = await fleet.spawn_ready(2)
        accepted: set[str] = set()
        async with producer_for(fleet) as producer:
            first = payloads(1000)
            await producer.enqueue_many(first)
            accepted |= {str(t.id) for t in first}
            await fleet.wait_for(lambda: len(fleet.completed()) >= 100)
            aof_server.kill()
            assert len(fleet.completed()) < len(first)  # mid-run
            # While Redis is down an enqueue is refused (not accepted), never silently dropped.
            late = payloads(200)
            with pytest.raises(BackendUnavailableError):
                await producer.enqueue(late[0])
            await asyncio.sleep(0.5)  # the outage lasts a while (not a synchronisation)
            aof_server.start()
            await producer.enqueue_many(late)
            accepted |= {str(t.id) for t in late}
            await fleet.wait_for(lambda: fleet.completed() >= accepted, timeout=60)
        assert all(w.alive() for w in workers)  # they resumed by themselves
        report(f"\nredis kill: {len(accepted)} tasks accepted, 1 Redis SIGKILL and restart (AOF always), lost 0")


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


@pytest.mark.parametrize("stop", ["stop_now", "stop_graceful"])
async def test_f_a_frozen_redis_does_not_hold_a_stop_and_the_task_runs_again(stop: str) -> None:
    """SIGSTOP the server mid-task: the stop still returns (it hung in handing the lease back, for 25 s and more);
    the lease it could not hand back expires, and another node runs the task once the server is back."""
    started = asyncio.Event()
    runs: list[int] = []

    async def work(ctx: TaskContext, payload: object) -> None:
        runs.append(ctx.attempt)
        started.set()
        if len(runs) == 1:
            await asyncio.Event().wait()  # until cancelled

    with redis_server() as server:
        assert server.process is not None
        pid = server.process.pid
        url = f"{server.url}?prefix=frozen"
        first = manager(url, work, durable_lease=LEASE_S, stop_timeout=0.5)
        await first.start()
        await first.register_durable_task(DurableTask("work", 1))
        async with asyncio.timeout(10):
            await started.wait()
        os.kill(pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(15):  # a hang guard, not a speed check: the bound is 0.5 s + 1.25 s
                with contextlib.suppress(TimeoutError):  # stop_graceful: its own timeout passed, work cancelled
                    await getattr(first, stop)(timeout=0.5)
            assert first.state is ManagerState.STOPPED
            assert first.metrics().abandoned == 1  # its settle waited on the frozen server
        finally:
            os.kill(pid, signal.SIGCONT)
        started.clear()
        async with manager(url, work) as second:
            async with asyncio.timeout(20):
                await started.wait()  # the lease expired: delivered again
            await second.wait()
        assert runs == [1, 2]


async def test_g_a_frozen_redis_fails_an_enqueue_after_one_socket_timeout() -> None:
    """A server that does not answer is not retried by the client: one ``socket_timeout`` and a typed error
    (timeouts were retried five times: 60 s with the default 10 s timeout, 12 s with the 2 s here)."""
    with redis_server() as server:
        assert server.process is not None
        pid = server.process.pid
        backend = RedisDurableBackend.from_url(f"{server.url}?socket_timeout=2")
        await backend.connect()
        unknown = DurableTask("work", payload=b"1", id=uuid.uuid4())
        os.kill(pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(8):  # a hang guard with room for a loaded machine: one timeout is 2 s
                with pytest.raises(BackendUnavailableError, match="unreachable"):
                    await backend.enqueue(unknown)
        finally:
            os.kill(pid, signal.SIGCONT)
        # The timed-out call sat in the frozen server's socket: it may still run when the server resumes.
        # Sending the same task again settles it: stored once, whichever ran first.
        with contextlib.suppress(DurableTaskExistsError):
            await backend.enqueue(unknown)
        await backend.enqueue(DurableTask("work", payload=b"2", id=uuid.uuid4()))  # the same client works again
        assert await backend.client.zcard(backend.keys.ready("default")) == 2
        await backend.aclose()
