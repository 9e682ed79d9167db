"""The durable path with default settings, against real redis-server processes and real worker processes.

Each test reproduces a failure measured on the old defaults: long tasks handed out again while they ran, a
task that kills its process never dead-lettered, one corrupt record stalling a queue, lost replies re-running
scripts, and renewal falling behind at 200 ms of latency. Workers that must die are really SIGKILLed; lost
replies and latency come from a loopback proxy the test runs (``fault_proxy.py``). Leases are 1-2 s so that the
tests stay short; the figures each test prints (``-s``) are what ``bench/README.md`` reports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultProxy
from redis.asyncio import Redis
from redis_helpers import until
from test_faults import LEASE_S, producer_for, redis_fleet
from worker_core import TaskContext, TaskManager, TaskStatus
from worker_core.durable import DurableHandlerSpec, DurableTask, delivery_limit
from worker_core.testing import FaultFleet, check_exactly_once
from worker_redis import Keys, RedisDurableBackend
from worker_redis.admin import NodeInfo, RedisAdmin
from worker_redis.testing import RedisServer


def report(line: str) -> None:
    """A figure for bench/README.md: shown with ``pytest -s``."""
    print(line)  # noqa: T201 - the test's measurement, read by whoever runs it with -s


# -- worker processes with the default settings ----------------------------------------------------------


@pytest.fixture
def fleet(redis_srv: RedisServer, prefix: str, tmp_path: Path) -> Iterator[FaultFleet]:
    with redis_fleet(redis_srv.url, prefix, tmp_path, renewal="default") as fleet:
        yield fleet


async def test_long_tasks_with_default_settings_run_exactly_once(fleet: FaultFleet, prefix: str, raw: Redis) -> None:
    fleet.work_ms = int(LEASE_S * 3000)  # each task runs three leases long
    await fleet.spawn_ready(2)
    tasks = [DurableTask("work", payload=b"%d" % i, id=uuid.uuid4()) for i in range(12)]
    ids = {str(t.id) for t in tasks}
    async with producer_for(fleet) as producer:
        await producer.enqueue_many(tasks)
        await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
    ran = check_exactly_once(fleet, ids)  # renewed in time: never handed out while it ran
    report(
        f"\nlong tasks: {len(ids)} tasks of {3 * LEASE_S:.0f} s on {LEASE_S:.0f} s leases, starts {sum(ran.values())}"
    )
    keys = Keys.for_prefix(prefix)

    async def all_acked() -> bool:  # a handler's last log line comes before its (batched) ack reaches Redis
        return int(await raw.zcard(keys.processing("default"))) == 0

    await until(all_acked, timeout=10)
    assert await raw.llen(keys.dead) == 0


async def test_a_task_that_kills_its_process_is_dead_lettered_after_the_delivery_cap(
    fleet: FaultFleet, prefix: str, raw: Redis
) -> None:
    keys = Keys.for_prefix(prefix)
    killer = DurableTask("work", payload=b'"die"', id=uuid.uuid4(), retries=0)
    others = [DurableTask("work", payload=b"%d" % i, id=uuid.uuid4(), retries=3) for i in range(50)]
    await fleet.spawn_ready()
    started = time.monotonic()
    async with producer_for(fleet) as producer:
        await producer.enqueue_many([killer, *others])
        # A process manager: whenever the worker dies, start another one (what systemd or Kubernetes do).
        await fleet.supervise(lambda: raw.lrange(keys.dead, 0, -1), timeout=90)
        elapsed = time.monotonic() - started
        deaths = fleet.count("K")
        ids = {str(t.id) for t in others}
        await fleet.supervise(lambda: fleet.completed() >= ids, timeout=60)
    record = await raw.hgetall(keys.task(str(killer.id)))
    report(f"\ncrash loop: {deaths} worker deaths, dead-lettered after {elapsed:.1f} s: {record[b'last_error']!r}")
    assert await raw.lrange(keys.dead, 0, -1) == [str(killer.id).encode()]
    assert b"delivery limit" in record[b"last_error"]
    assert deaths == delivery_limit(0)  # retries + 1 + the extra deliveries, then never again
    assert not any(w.alive() for w in fleet.workers[:-1])


# -- corrupt and foreign records ---------------------------------------------------------------------


def record(handler: bytes = b"work", **fields: bytes) -> dict[str, bytes]:
    base = {
        "handler": handler,
        "payload": b"1",
        "priority": b"0",  # ahead of the good tasks (priority 1): it is met first
        "queue": b"default",
        "weight": b"1",
        "retries": b"0",
        "retry_delay_ms": b"0",
        "attempts": b"0",
        "ready_at_ms": b"1",
        "updated_at_ms": b"1",
        "metadata": b"",
    }
    base.update(fields)
    return base


async def wrong_type(raw: Redis, keys: Keys) -> tuple[str, bytes]:
    task_id = str(uuid.uuid4())
    await raw.rpush(keys.task(task_id), "not", "a", "hash")
    await raw.zadd(keys.ready("default"), {task_id: 1})
    return task_id, b"quarantine"


def corrupt_hash(
    task_id: str, queue: bytes = b"default", drop: str = "", **fields: bytes
) -> Callable[..., Awaitable[Any]]:
    async def write(raw: Redis, keys: Keys) -> tuple[str, bytes]:
        p = keys.prefix.encode()
        hashed = record(**fields)
        hashed["queue"] = queue
        hashed.pop(drop, None)
        await raw.hset(p + b":task:" + task_id.encode(), mapping=hashed)  # type: ignore[arg-type]
        await raw.zadd(p + b":ready:" + queue, {task_id: 1})
        await raw.sadd(keys.queues, queue)
        return task_id, b"dead"

    return write


async def wrong_type_and_no_quarantine(raw: Redis, keys: Keys) -> tuple[str, bytes]:
    await raw.set(keys.quarantine, "not a hash")  # a foreign value where the note would go: it cannot be written
    task_id, _ = await wrong_type(raw, keys)
    return task_id, b"unnoted"


CORRUPT: dict[str, Callable[..., Awaitable[Any]]] = {
    "task key of the wrong type": wrong_type,
    "task key of the wrong type, P:quarantine foreign too": wrong_type_and_no_quarantine,
    "handler not UTF-8": corrupt_hash(str(uuid.uuid4()), handler=b"\xff\xfework"),
    "queue name not UTF-8": corrupt_hash(str(uuid.uuid4()), queue=b"q\xff"),
    "retries=1e400": corrupt_hash(str(uuid.uuid4()), retries=b"1e400"),
    "priority=nan": corrupt_hash(str(uuid.uuid4()), priority=b"nan"),
    "payload missing": corrupt_hash(str(uuid.uuid4()), drop="payload"),
    "id not a UUID": corrupt_hash("not-a-uuid"),
    "attempts not a number": corrupt_hash(str(uuid.uuid4()), attempts=b"many"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
async def test_a_corrupt_record_is_moved_aside_and_the_other_199_tasks_run(
    kind: str, redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    keys = backend.keys
    bad_id, where = await CORRUPT[kind](raw, keys)
    ran: list[str] = []

    async def work(ctx: TaskContext, payload: object) -> None:
        ran.append(str(ctx.task_id))

    good = [DurableTask("work", payload=b"%d" % i, id=uuid.uuid4()) for i in range(199)]
    tm = TaskManager(
        max_workers=16,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_poll_interval=0.05,
        durable_batch_size=20,
    )
    try:
        async with tm:
            with tm.subscribe_results(256) as results:
                await backend.enqueue_many(good)
                async with asyncio.timeout(30):
                    done = [await anext(results) for _ in good]
    finally:
        await backend.aclose()
    assert all(result.status is TaskStatus.COMPLETED for result in done)
    assert sorted(ran) == sorted(str(t.id) for t in good)
    if where == b"quarantine":
        reason = await raw.hget(keys.quarantine, keys.task(bad_id))
        assert reason is not None
        assert b"not a hash" in reason
        assert await raw.type(keys.task(bad_id)) == b"list"  # moved aside, left as it was
    elif where == b"unnoted":
        assert await raw.get(keys.quarantine) == b"not a hash"  # left as it was; the record moved aside all the same
        assert await raw.type(keys.task(bad_id)) == b"list"
        assert not await raw.zscore(keys.ready("default"), bad_id)
    else:
        assert await raw.lrange(keys.dead, 0, -1) == [bad_id.encode()]
        reason = await raw.hget(f"{keys.prefix}:task:{bad_id}", "last_error")
        assert reason is not None
        assert b"corrupt record" in reason


# -- lost replies and latency, through a loopback proxy ------------------------------------------------


def proxied_manager(url: str, prefix: str, fn: Any, **options: Any) -> tuple[TaskManager, RedisDurableBackend]:
    backend = RedisDurableBackend.from_url(url, prefix=prefix)
    settings: dict[str, Any] = {
        "max_workers": 16,
        "tasks_per_second": None,
        "durable_backend": backend,
        "durable_handlers": {"work": DurableHandlerSpec(None, fn)},
        "durable_codec": "json",
        "durable_poll_interval": 0.05,
        "durable_lease": 2.0,
    }
    settings.update(options)
    return TaskManager(**settings), backend


async def test_lost_replies_strand_no_task_and_raise_no_false_warning(
    redis_srv: RedisServer, prefix: str, raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    attempts: Counter[str] = Counter()
    deliveries: list[int] = []

    async def work(ctx: TaskContext, payload: object) -> None:
        attempts[str(ctx.task_id)] += 1
        deliveries.append(ctx.attempt)

    async with FaultProxy(redis_srv.port, drop_every=9) as proxy:
        tm, backend = proxied_manager(proxy.url(), prefix, work)
        try:
            async with tm:
                with tm.subscribe_results(512) as results:
                    singles = [await tm.register_durable_task(DurableTask("work", i)) for i in range(100)]
                    batch = await tm.register_durable_tasks(*(DurableTask("work", i) for i in range(100)))
                    async with asyncio.timeout(60):
                        done = [await anext(results) for _ in range(200)]
        finally:
            await backend.aclose()
    report(
        f"\nlost replies: {proxy.dropped} of {proxy.replies} replies dropped, 200 tasks, runs {sum(attempts.values())}"
    )
    assert proxy.dropped >= 10
    assert all(result.status is TaskStatus.COMPLETED for result in done)
    assert set(attempts) == {str(i) for i in [*singles, *batch]}
    assert max(attempts.values()) == 1
    assert set(deliveries) == {1}  # no lease was stranded until it expired and handed out again
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("worker")]
    assert not [m for m in warned if "lease lost" in m or "already exist" in m], warned
    assert await raw.zcard(f"{{{prefix}}}:processing:default") == 0
    assert await raw.zcard(f"{{{prefix}}}:ready:default") == 0


async def test_renewal_at_200_ms_latency_keeps_every_long_task_single(
    redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    runs: Counter[str] = Counter()

    async def long(ctx: TaskContext, payload: object) -> None:
        runs[str(ctx.task_id)] += 1
        await asyncio.sleep(3.0)

    async with FaultProxy(redis_srv.port, delay=0.2) as proxy:
        first, first_backend = proxied_manager(proxy.url(), prefix, long, durable_lease=1.5)
        second, second_backend = proxied_manager(proxy.url(), prefix, long, durable_lease=1.5)
        try:
            async with first, second:
                with first.subscribe_results(64) as a, second.subscribe_results(64) as b:
                    ids = await first.register_durable_tasks(*(DurableTask("work", i) for i in range(16)))

                    async def count(results: Any, into: list[Any]) -> None:
                        async for result in results:
                            into.append(result)

                    done: list[Any] = []
                    readers = [asyncio.create_task(count(a, done)), asyncio.create_task(count(b, done))]

                    async def all_done() -> bool:
                        return len(done) >= 16

                    try:
                        await until(all_done, timeout=60)
                    finally:
                        for reader in readers:
                            reader.cancel()
                        await asyncio.gather(*readers, return_exceptions=True)
        finally:
            await first_backend.aclose()
            await second_backend.aclose()
    report(f"\n200 ms latency: 16 tasks of 3 s on 1.5 s leases, runs {sum(runs.values())}")
    assert set(runs) == {str(i) for i in ids}
    assert max(runs.values()) == 1


# -- operations: node heartbeats and the backlog -------------------------------------------------------


async def test_nodes_heartbeat_with_the_renewal_and_a_killed_one_drops_out(fleet: FaultFleet) -> None:
    admin = RedisAdmin.from_url(fleet.url)
    try:
        [worker] = await fleet.spawn_ready()

        async def one_node() -> list[NodeInfo]:
            return await admin.nodes()

        [node] = await until(one_node)
        assert node.pid == worker.pid
        assert node.host == socket.gethostname()
        assert node.queues == ()  # every queue
        assert node.last_seen_ms > 0
        fleet.kill(worker)

        async def gone() -> bool:
            return not await admin.nodes()

        await until(gone, timeout=15)  # two leases after its last heartbeat
    finally:
        await admin.aclose()


async def test_backlog_is_in_stats_and_on_the_backend_for_a_gauge(redis_srv: RedisServer, prefix: str) -> None:
    backend = RedisDurableBackend.from_url(redis_srv.url, prefix=prefix)
    admin = RedisAdmin.from_url(redis_srv.url, prefix=prefix)

    async def work(ctx: TaskContext, payload: object) -> None:
        return None

    tm = TaskManager(
        max_workers=1,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_lease=0.6,
    )
    try:
        await backend.enqueue_many([DurableTask("work", payload=b"1", id=uuid.uuid4()) for _ in range(5)])
        tm.set_max_workers(0)  # nothing is leased: the five stay due
        async with tm:

            async def seen() -> dict[str, tuple[int, float]]:
                return backend.backlog()

            backlog = await until(seen)  # learned by the heartbeat, in the renewal round trip
            assert backlog["default"][0] == 5
            assert backlog["default"][1] >= 0.0
            [queue] = (await admin.overview()).queues
            assert (queue.name, queue.ready, queue.due) == ("default", 5, 5)
            assert queue.oldest_due_age_s > 0.0
            assert queue.to_json()["due"] == 5
            assert [n.id for n in await admin.nodes()] == [backend.owner]
        assert await admin.nodes() == []  # a node that stops leaves the list at once
    finally:
        await backend.aclose()
        await admin.aclose()
