"""In-memory backend specifics beyond the conformance suite: inspection, validation, pause, wake-ups, clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from worker_core.durable import DurableBackend, DurableTask, QueueConfigurableBackend, ReleasableBackend
from worker_core.durable.types import WakeableBackend
from worker_core.errors import ConfigurationError, InvalidTaskError, LeaseLostError
from worker_core.testing import DeadLetter, FakeClock, InMemoryDurableBackend

LONG = 30.0


def task(handler: str = "h", payload: bytes = b"p", **fields: Any) -> DurableTask:
    fields.setdefault("id", uuid.uuid4())
    return DurableTask(handler, None, payload, **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> InMemoryDurableBackend:
    return InMemoryDurableBackend(clock)


def test_implements_every_protocol(backend: InMemoryDurableBackend) -> None:
    assert isinstance(backend, DurableBackend)
    assert isinstance(backend, QueueConfigurableBackend)
    assert isinstance(backend, ReleasableBackend)
    assert isinstance(backend, WakeableBackend)


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock(100.0)
    assert clock.time() == 100.0
    clock.advance(2.5)
    assert clock.time() == 102.5
    with pytest.raises(ValueError, match=">= 0"):
        clock.advance(-1)
    assert clock.time() == 102.5


async def test_get_and_counts_follow_the_task_through_its_states(
    backend: InMemoryDurableBackend, clock: FakeClock
) -> None:
    t = task(retries=2)
    await backend.enqueue(t)
    state = backend.get(t.id)  # type: ignore[arg-type]
    assert state is not None
    assert (state.state, state.attempts, state.ready_at) == ("ready", 0, clock.time())
    assert backend.ready_count() == 1
    assert backend.ready_count("default") == 1
    assert backend.ready_count("other") == 0
    [lease] = await backend.dequeue(1, 10.0)
    state = backend.get(str(t.id))
    assert state is not None
    assert (state.state, state.attempts, state.lease_expires_at) == ("leased", 1, clock.time() + 10.0)
    assert lease.expires_at == clock.time() + 10.0
    assert backend.leased_count() == 1
    clock.advance(1)
    await backend.fail(lease, "bad input")
    state = backend.get(t.id)  # type: ignore[arg-type]
    assert state is not None
    assert (state.state, state.last_error, state.lease_expires_at) == ("dead", "bad input", None)
    [dead] = backend.dead_letters()
    assert dead == DeadLetter(dead.task, "bad input", 1, clock.time())
    assert dead.task.payload == b"p"  # kept for replay
    assert len(backend) == 1


async def test_ack_removes_the_record(backend: InMemoryDurableBackend) -> None:
    t = task()
    await backend.enqueue(t)
    [lease] = await backend.dequeue(1, LONG)
    await backend.ack(lease)
    assert backend.get(t.id) is None  # type: ignore[arg-type]
    assert len(backend) == 0
    await backend.enqueue(task(id=t.id))  # an acked id may be used again (as in go-worker)
    assert backend.ready_count() == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (DurableTask("h", None, b"x"), "id is required"),
        (DurableTask("", None, b"x", id=uuid.uuid4()), "handler is required"),
        (DurableTask("h", {"a": 1}, None, id=uuid.uuid4()), "payload must be bytes"),
    ],
)
async def test_invalid_tasks_are_rejected_and_nothing_is_stored(
    backend: InMemoryDurableBackend, bad: DurableTask, message: str
) -> None:
    await backend.enqueue(task())
    with pytest.raises(InvalidTaskError, match=message):
        await backend.enqueue(bad)
    assert len(backend) == 1


async def test_stored_task_is_a_copy_without_the_message(backend: InMemoryDurableBackend) -> None:
    metadata = {"k": "v"}
    original = DurableTask("h", object(), bytearray(b"abc"), id=uuid.uuid4(), metadata=metadata)  # type: ignore[arg-type]
    await backend.enqueue(original)
    metadata["k"] = "changed after enqueue"
    [lease] = await backend.dequeue(1, LONG)
    assert lease.task.message is None
    assert lease.task.payload == b"abc"
    assert isinstance(lease.task.payload, bytes)
    assert lease.task.metadata == {"k": "v"}
    assert lease.task.metadata is not None
    lease.task.metadata["k"] = "changed by the consumer"
    state = backend.get(lease.lease_id)
    assert state is not None
    assert state.task.metadata == {"k": "v"}


async def test_defaults_are_normalised(backend: InMemoryDurableBackend) -> None:
    await backend.enqueue(DurableTask("h", None, b"", id=uuid.uuid4(), weight=0, retries=None, retry_delay=None))
    [lease] = await backend.dequeue(1, LONG)
    assert (lease.task.queue, lease.task.weight, lease.task.retries, lease.task.retry_delay) == ("default", 1, 0, 0.0)
    assert lease.max_retries == 0


async def test_naive_run_at_means_utc(backend: InMemoryDurableBackend, clock: FakeClock) -> None:
    later = datetime.fromtimestamp(clock.time() + 60, tz=UTC).replace(tzinfo=None)
    await backend.enqueue(task(run_at=later))
    assert await backend.dequeue(1, LONG) == []
    clock.advance(59.9)
    assert await backend.dequeue(1, LONG) == []
    clock.advance(0.1)
    assert len(await backend.dequeue(1, LONG)) == 1


async def test_bad_arguments_are_configuration_errors(backend: InMemoryDurableBackend) -> None:
    with pytest.raises(ConfigurationError, match="lease must be > 0"):
        await backend.dequeue(1, 0)
    await backend.enqueue(task())
    [lease] = await backend.dequeue(0, LONG)  # a limit below 1 means 1, as in go-worker
    with pytest.raises(ConfigurationError, match="duration must be > 0"):
        await backend.extend(lease, -1)
    with pytest.raises(ConfigurationError, match="default queue"):
        InMemoryDurableBackend(default_queue=" ")
    with pytest.raises(ConfigurationError, match="weight"):
        InMemoryDurableBackend(queue_weights={"a": 0})
    with pytest.raises(ConfigurationError, match="weight"):
        backend.configure_queues("default", {"a": True})


async def test_negative_nack_delay_means_now(backend: InMemoryDurableBackend) -> None:
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, LONG)
    await backend.nack(lease, -5)
    [again] = await backend.dequeue(1, LONG)
    assert again.attempts == 2


async def test_expired_lease_stays_valid_until_requeued(backend: InMemoryDurableBackend, clock: FakeClock) -> None:
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, 1.0)
    clock.advance(2)
    await backend.extend(lease, LONG)  # expiry is lazy: no dequeue ran, so the holder keeps it
    clock.advance(2)
    assert await backend.dequeue(1, LONG) == []
    await backend.ack(lease)
    assert len(backend) == 0


async def test_expired_lease_is_lost_once_a_dequeue_requeued_it(
    backend: InMemoryDurableBackend, clock: FakeClock
) -> None:
    backend.pause()  # the dequeue below requeues expired leases but hands nothing out
    await backend.enqueue(task())
    backend.resume()
    [lease] = await backend.dequeue(1, 1.0)
    clock.advance(1)
    backend.pause()
    assert await backend.dequeue(1, LONG) == []
    with pytest.raises(LeaseLostError):
        await backend.ack(lease)
    state = backend.get(lease.lease_id)
    assert state is not None
    assert (state.state, state.attempts) == ("ready", 1)


async def test_pause_and_resume(backend: InMemoryDurableBackend) -> None:
    await backend.enqueue(task("a", queue="a"))
    await backend.enqueue(task("b", queue="b"))
    backend.pause()
    assert await backend.dequeue(10, LONG) == []
    backend.resume()
    backend.pause("a")
    assert [lease.task.handler for lease in await backend.dequeue(10, LONG)] == ["b"]
    backend.resume("a")
    assert [lease.task.handler for lease in await backend.dequeue(10, LONG)] == ["a"]
    assert backend.queues() == ["a", "b"]


async def test_round_robin_rotates_the_first_queue(backend: InMemoryDurableBackend) -> None:
    for _ in range(3):
        await backend.enqueue(task("a", queue="a"))
        await backend.enqueue(task("b", queue="b"))
    handlers = [(await backend.dequeue(1, LONG))[0].task.handler for _ in range(4)]
    assert sorted(handlers[:2]) == ["a", "b"]
    assert sorted(handlers[2:]) == ["a", "b"]


async def test_a_dequeue_fills_its_limit_from_one_busy_queue(backend: InMemoryDurableBackend) -> None:
    backend.configure_queues("default", {"a": 1, "b": 1})
    for _ in range(5):
        await backend.enqueue(task("a", queue="a"))
    await backend.enqueue(task("b", queue="b"))
    leases = await backend.dequeue(6, LONG)
    assert sorted(lease.task.handler for lease in leases) == ["a"] * 5 + ["b"]


async def test_release_skips_leases_no_longer_held(backend: InMemoryDurableBackend) -> None:
    await backend.enqueue(task())
    [lease] = await backend.dequeue(1, LONG)
    await backend.ack(lease)
    await backend.release([lease])
    assert len(backend) == 0


async def test_wait_for_work_returns_at_once_when_a_task_is_ready(backend: InMemoryDurableBackend) -> None:
    await backend.enqueue(task())
    async with asyncio.timeout(5):
        await backend.wait_for_work(LONG)


async def test_wait_for_work_wakes_on_enqueue(backend: InMemoryDurableBackend) -> None:
    async def producer() -> None:
        await asyncio.sleep(0)
        await backend.enqueue(task())

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        waiter = group.create_task(backend.wait_for_work(LONG))
        group.create_task(producer())
    assert waiter.done()
    assert backend.ready_count() == 1


async def test_wait_for_work_wakes_when_the_fake_clock_reaches_a_delayed_task(
    backend: InMemoryDurableBackend, clock: FakeClock
) -> None:
    await backend.enqueue(task(run_at=datetime.fromtimestamp(clock.time() + 3600, tz=UTC)))
    woke = asyncio.Event()

    async def waiter() -> None:
        await backend.wait_for_work(LONG)
        woke.set()

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        group.create_task(waiter())
        await asyncio.sleep(0)
        assert not woke.is_set()
        clock.advance(3600)
    assert woke.is_set()
    assert len(await backend.dequeue(1, LONG)) == 1


async def test_wait_for_work_times_out_when_idle() -> None:
    backend = InMemoryDurableBackend()
    async with asyncio.timeout(5):
        await backend.wait_for_work(0.01)
    assert await backend.dequeue(1, LONG) == []


async def test_weights_hold_across_single_task_dequeues(backend: InMemoryDurableBackend) -> None:
    backend.configure_queues("default", {"heavy": 3, "light": 1})
    for _ in range(8):
        await backend.enqueue(task(queue="heavy"))
        await backend.enqueue(task(queue="light"))
    queues = [(await backend.dequeue(1, LONG))[0].task.queue for _ in range(8)]
    assert queues == ["heavy", "heavy", "heavy", "light"] * 2


async def test_a_drained_queue_gives_up_its_turn(backend: InMemoryDurableBackend) -> None:
    backend.configure_queues("default", {"a": 5})
    await backend.enqueue(task(queue="a"))
    for _ in range(3):
        await backend.enqueue(task(queue="b"))
    queues = [lease.task.queue for lease in await backend.dequeue(10, LONG)]
    assert sorted(queues) == ["a", "b", "b", "b"]
