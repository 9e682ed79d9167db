"""The result store on a real redis-server: across OS processes, re-sent scripts, TTL, the recent list, bad data.

The conformance suite (``test_conformance.py``) checks the contract; these check what is Redis-specific.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis_helpers import MakeBackend, task
from result_tasks import Job, job, registry
from worker_core import TaskManager, TaskStatus
from worker_core.durable.outcomes import RemoteTaskError, TaskOutcome
from worker_core.errors import BackendUnavailableError, ConfigurationError, PayloadError
from worker_redis import RedisDurableBackend
from worker_redis.testing import RedisServer

HERE = Path(__file__).parent
GUARD = 30.0


def outcome_of(lease: Any, **fields: Any) -> TaskOutcome:
    record = lease.task
    return TaskOutcome(
        id=record.id,
        handler=record.handler,
        queue=record.queue,
        status=fields.pop("status", TaskStatus.COMPLETED),
        attempts=lease.attempts,
        finished_at=time.time(),
        **fields,
    )


@pytest.fixture
def worker_process(redis_srv: RedisServer, prefix: str, tmp_path: Path) -> Iterator[Path]:
    """A worker in its own OS process; yields its ack log."""
    log = tmp_path / "acks.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "result_worker.py"), redis_srv.url, prefix, str(log)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield log
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def test_a_producer_process_awaits_results_a_worker_process_produced(
    redis_srv: RedisServer, prefix: str, worker_process: Path
) -> None:
    producer = TaskManager(durable_backend=f"{redis_srv.url}?prefix={prefix}", durable_handlers=[job])  # never started
    backend = producer.durable_backend()
    assert isinstance(backend, RedisDurableBackend)
    try:
        await _produce(producer, worker_process)
    finally:
        await backend.aclose()


async def _produce(producer: TaskManager, worker_log: Path) -> None:
    ok = await producer.register_durable_task(job.task(Job(n=21)))
    failed = await producer.register_durable_task(job.task(Job(n=7, mode="fail")))
    assert await producer.handle(ok).result(timeout=GUARD) == {"double": 42}
    with pytest.raises(RemoteTaskError) as caught:
        await producer.handle(failed).result(timeout=GUARD)
    assert caught.value.error_type == "ValueError"
    assert caught.value.error_message == "bad input 7"
    assert "explode" in caught.value.traceback
    outcome = await producer.durable_outcome(failed)
    assert outcome is not None
    assert outcome.status is TaskStatus.FAILED

    # Latency: the handle is awaited before the task exists, so the wake-up (not the first read) returns it.
    wakes: dict[uuid.UUID, float] = {}

    async def await_one(n: int) -> None:
        task_id = uuid.uuid4()
        handle = producer.handle(task_id)
        waiting = asyncio.create_task(handle.result(timeout=GUARD))
        await asyncio.sleep(0.01)  # let the subscription be confirmed (latency sample only; correctness holds anyway)
        await producer.register_durable_task(job.task(Job(n=n), id=task_id))
        assert await waiting == {"double": 2 * n}
        wakes[task_id] = time.time()

    for n in range(40):
        await await_one(n)
    acks: dict[uuid.UUID, tuple[float, float]] = {}
    deadline = time.monotonic() + GUARD
    while not wakes.keys() <= acks.keys():  # the worker logs an ack once its reply is in: maybe after the wake
        assert time.monotonic() < deadline, "the worker did not log every ack"
        await asyncio.sleep(0.01)
        for line in (await asyncio.to_thread(worker_log.read_text)).splitlines():
            fields = line.split()
            if len(fields) == 4:  # (a line being written is read again next time)
                acks[uuid.UUID(fields[1])] = (float(fields[2]), float(fields[3]))
    after_sent = [(wakes[i] - acks[i][0]) * 1000 for i in wakes]
    after_done = [(wakes[i] - acks[i][1]) * 1000 for i in wakes]
    sys.stdout.write(
        f"\nresult wake-up across processes, {len(wakes)} tasks: p50 {statistics.median(after_sent):.2f} ms after the"
        f" worker sent its ack, {statistics.median(after_done):.2f} ms after its ack returned\n"
    )


async def test_a_re_sent_ack_with_an_outcome_stores_it_once(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    p = backend.keys.prefix + ":"
    one = task()
    await backend.enqueue(one)
    [lease] = await backend.dequeue(1, 30)
    data = outcome_of(lease, result=b"1").encode()
    args: list[Any] = [p, "ack-outcome-1", 100, lease.lease_id, "default", lease.token, lease.attempts, data, 60_000]
    keys = (backend.keys.queues,)
    first = await backend._s.ack(keys, args)
    second = await backend._s.ack(keys, args)  # redis-py's retry after a lost reply: same request id
    assert first == second == [1]
    assert await raw.lrange(backend.keys.recent("default"), 0, -1) == [lease.lease_id.encode()]  # pushed once
    assert await raw.get(backend.keys.result(lease.lease_id)) == data
    assert 0 < await raw.pttl(backend.keys.result(lease.lease_id)) <= 60_000


async def test_a_re_sent_fail_with_an_outcome_stores_it_once(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 30)
    outcome = outcome_of(lease, status=TaskStatus.FAILED, error_type="ValueError", error_message="bad")
    await backend.fail_with_outcome(lease, "ValueError: bad", outcome, 60)
    await backend.fail_with_outcome(lease, "ValueError: bad", outcome, 60)  # its own fail ran: no LeaseLostError
    assert await raw.lrange(backend.keys.recent("default"), 0, -1) == [lease.lease_id.encode()]
    assert await raw.lrange(backend.keys.dead, 0, -1) == [lease.lease_id.encode()]
    assert await backend.get_outcome(uuid.UUID(lease.lease_id)) == outcome


async def test_outcomes_expire_and_the_recent_list_is_newest_first_and_bounded(make_backend: MakeBackend) -> None:
    backend = await make_backend(recent_outcomes=3)
    ids = []
    for _ in range(5):
        one = task(queue="bounded")
        await backend.enqueue(one)
        [lease] = await backend.dequeue(1, 30)
        await backend.ack_with_outcome(lease, outcome_of(lease), 60)
        ids.append(one.id)
    short = task(queue="bounded")
    await backend.enqueue(short)
    [lease] = await backend.dequeue(1, 30)
    await backend.ack_with_outcome(lease, outcome_of(lease), 0.05)
    assert [o.id for o in await backend.recent_outcomes("bounded", 10)] == [short.id, *ids[:-3:-1]]
    assert [o.id for o in await backend.recent_outcomes("bounded", 1)] == [short.id]
    client: Redis = backend.client
    assert await client.llen(backend.keys.recent("bounded")) == 3
    assert short.id is not None
    deadline = time.monotonic() + GUARD
    while await backend.get_outcome(short.id) is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert [o.id for o in await backend.recent_outcomes("bounded", 10)] == ids[:-3:-1]  # expired: left out
    with pytest.raises(ConfigurationError, match="ttl"):
        await backend.ack_with_outcome(lease, outcome_of(lease), 0)


async def test_corrupt_data_under_a_result_key_raises_payload_error(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    bad, good = uuid.uuid4(), task()
    await raw.set(backend.keys.result(str(bad)), b"\xffnot json")
    with pytest.raises(PayloadError):
        await backend.get_outcome(bad)
    with pytest.raises(PayloadError):
        await backend.wait_outcome(bad, GUARD)
    # A corrupt message on a waited channel does not stop the shared connection: the waiter reads the key.
    await backend.enqueue(good)
    assert good.id is not None
    waiting = asyncio.create_task(backend.wait_outcome(good.id, GUARD))
    await _until_subscribed(raw, backend.keys.done(str(good.id)))
    await raw.spublish(backend.keys.done(str(good.id)), b"garbage")
    [lease] = await backend.dequeue(1, 30)
    outcome = outcome_of(lease)
    await backend.ack_with_outcome(lease, outcome, 60)
    async with asyncio.timeout(GUARD):
        assert await waiting == outcome
    await raw.lpush(backend.keys.recent("default"), str(bad))
    assert [o.id for o in await backend.recent_outcomes("default", 10)] == [good.id]  # the corrupt one left out


async def test_many_waiters_share_one_connection_and_leave_nothing_behind(
    make_backend: MakeBackend, raw: Redis
) -> None:
    backend = await make_backend()
    worker = await make_backend()
    tasks = [task() for _ in range(50)]
    await worker.enqueue_many(tasks)
    waiting = [asyncio.create_task(backend.wait_outcome(t.id, GUARD)) for t in tasks if t.id is not None]
    twice = asyncio.create_task(backend.wait_outcome(tasks[0].id, GUARD)) if tasks[0].id else None
    leases = await worker.dequeue(50, 30)
    await asyncio.gather(*(worker.ack_with_outcome(le, outcome_of(le), 60) for le in leases))
    async with asyncio.timeout(GUARD):
        got = await asyncio.gather(*waiting)
        assert twice is not None
        assert await twice is not None
    assert {o.id for o in got if o is not None} == {t.id for t in tasks}
    assert await backend.wait_outcome(uuid.uuid4(), 0.05) is None
    clients = await raw.client_list()
    subscribed = [c for c in clients if int(c.get("ssub", 0) or 0) or int(c.get("sub", 0) or 0)]
    assert len(subscribed) <= 1  # one pub/sub connection, whatever the number of waiters
    deadline = time.monotonic() + GUARD
    while backend.statistics()["outcome_waits"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_waiter_survives_a_lost_pub_sub_connection(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    worker = await make_backend()
    one = task()
    await worker.enqueue(one)
    assert one.id is not None
    waiting = asyncio.create_task(backend.wait_outcome(one.id, GUARD))
    deadline = time.monotonic() + GUARD
    while not await _pubsub_clients(raw):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await raw.client_kill_filter(_type="pubsub")
    [lease] = await worker.dequeue(1, 30)
    outcome = outcome_of(lease)
    await worker.ack_with_outcome(lease, outcome, 60)  # may be published while nobody listens: the key is read
    async with asyncio.timeout(GUARD):
        assert await waiting == outcome
    assert backend._waiters.reconnects >= 1


async def test_aclose_ends_waiters_with_a_typed_error(make_backend: MakeBackend, raw: Redis) -> None:
    backend = await make_backend()
    task_id = uuid.uuid4()
    waiting = asyncio.create_task(backend.wait_outcome(task_id, GUARD))
    await _until_subscribed(raw, backend.keys.done(str(task_id)))
    await backend.aclose()
    with pytest.raises(BackendUnavailableError):
        await waiting


async def _until_subscribed(raw: Redis, channel: str) -> None:
    """Wait (polling the server, bounded) until someone is subscribed to the shard channel ``channel``."""
    deadline = time.monotonic() + GUARD
    while True:
        [(_, count)] = await raw.pubsub_shardnumsub(channel)
        if count:
            return
        assert time.monotonic() < deadline, f"nobody subscribed to {channel} within {GUARD}s"
        await asyncio.sleep(0.005)


async def _pubsub_clients(raw: Redis) -> list[Any]:
    return [c for c in await raw.client_list() if int(c.get("ssub", 0) or 0) or int(c.get("sub", 0) or 0)]


def test_the_recent_bound_is_an_option_and_a_url_query_argument(redis_srv: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="recent_outcomes"):
        RedisDurableBackend.from_url(redis_srv.url, recent_outcomes=0)
    with pytest.raises(ConfigurationError, match="recent_outcomes"):
        RedisDurableBackend.from_url(f"{redis_srv.url}?recent_outcomes=x")
    assert RedisDurableBackend.from_url(f"{redis_srv.url}?recent_outcomes=7")._recent_limit == 7


async def test_large_outcomes_are_split_across_ack_calls_and_all_stored(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    tasks = [task() for _ in range(4)]
    await backend.enqueue_many(tasks)
    leases = await backend.dequeue(4, 30)
    calls: list[int] = []
    send = backend._send_acks

    async def counted(acks: Any) -> Any:
        calls.append(len(acks))
        return await send(acks)

    backend._acks._send = counted
    big = b'"' + b"x" * 600_000 + b'"'  # two of these exceed one call's outcome budget
    outcomes = [outcome_of(le, result=big) for le in leases]
    await asyncio.gather(*(backend.ack_with_outcome(le, o, 60) for le, o in zip(leases, outcomes, strict=True)))
    assert sum(calls) == 4
    assert len(calls) >= 3  # at most one 600 kB outcome per call (about 1 MiB of outcomes per call)
    for outcome in outcomes:
        assert await backend.get_outcome(outcome.id) == outcome


async def test_a_task_the_dequeue_script_dead_letters_wakes_its_waiting_handle(
    redis_srv: RedisServer, prefix: str
) -> None:
    """A task whose every worker died (the delivery limit) is dead-lettered by dequeue.lua, which no attempt
    settles: its outcome is still stored and published, so an awaiting handle raises at once instead of
    waiting out its timeout."""
    url = f"{redis_srv.url}?prefix={prefix}"
    producer = TaskManager(durable_backend=url, durable_handlers=[job])  # declarations only, never started
    consumer = RedisDurableBackend.from_url(url, extra_deliveries=0)
    try:
        task_id = await producer.register_durable_task(job.task(Job(n=1), retries=0))
        waiting = asyncio.create_task(producer.handle(task_id).result(timeout=GUARD))
        (lease,) = await consumer.dequeue(1, 0.05)  # the one allowed delivery; its worker "dies"
        assert lease.lease_id == str(task_id)
        leases: list[Any] = []
        for _ in range(200):  # until the lease expired and the next dequeue met the delivery limit
            leases = await consumer.dequeue(1, 0.05)
            if waiting.done() or leases:
                break
            await asyncio.sleep(0.02)
        assert leases == []
        with pytest.raises(RemoteTaskError) as caught:
            await asyncio.wait_for(waiting, GUARD)
        assert caught.value.error_type == "DeliveryLimitExceeded"
        assert caught.value.error_message.startswith("delivery limit")
        outcome = await producer.durable_outcome(task_id)
        assert outcome is not None
        assert (outcome.handler, outcome.attempts) == (job.name, 1)
        assert [o.id for o in await consumer.recent_outcomes("default", 10)] == [task_id]
    finally:
        await consumer.aclose()
        backend = producer.durable_backend()
        assert isinstance(backend, RedisDurableBackend)
        await backend.aclose()


async def test_configure_outcomes_none_stores_no_outcome_for_moved_tasks(redis_srv: RedisServer, prefix: str) -> None:
    backend = RedisDurableBackend.from_url(f"{redis_srv.url}?prefix={prefix}", extra_deliveries=0)
    backend.configure_outcomes(None)
    try:
        record = task("job", retries=0)
        await backend.enqueue(record)
        assert len(await backend.dequeue(1, 0.05)) == 1
        await asyncio.sleep(0.1)  # the lease expires unsettled (the point of the test: time must pass)
        assert await backend.dequeue(1, 0.05) == []
        assert record.id is not None
        assert await backend.get_outcome(record.id) is None
    finally:
        await backend.aclose()


async def test_foreign_values_at_the_wake_list_and_the_recent_list_stop_no_task_and_lose_no_outcome(
    redis_srv: RedisServer, prefix: str, raw: Redis
) -> None:
    """Another program's string at two of our additive keys: before, every enqueue failed with WRONGTYPE after
    it had stored the task (the wake-up push came last), and every ack with an outcome after it had settled."""
    url = f"{redis_srv.url}?prefix={prefix}"
    keys = RedisDurableBackend.from_url(url).keys
    await raw.set(keys.wake, "not a list")
    await raw.set(keys.recent("default"), "not a list")
    worker = TaskManager(
        durable_backend=url, durable_handlers=registry.handlers(), durable_poll_interval=0.05, max_workers=4
    )
    async with worker:
        ids = [await worker.register_durable_task(job.task(Job(n))) for n in range(5)]
        results = [await worker.handle(task_id).result(timeout=GUARD) for task_id in ids]
    assert results == [{"double": 2 * n} for n in range(5)]
    assert await raw.get(keys.wake) == b"not a list"  # never overwritten
    reader = RedisDurableBackend.from_url(url)
    try:
        assert (await reader.get_outcome(ids[0])) is not None  # stored, though not listed
    finally:
        await reader.aclose()
