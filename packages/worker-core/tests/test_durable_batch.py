"""``register_durable_tasks`` hands a batch to a ``BatchEnqueueBackend`` in one ``enqueue_many`` call, through a
real TaskManager on the in-memory backend; backends without the capability keep one ``enqueue`` per task, and
both paths keep the same public contract."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import pytest
from core_helpers import until
from worker_core import (
    BackendUnavailableError,
    DurableTaskExistsError,
    HandlerNotFoundError,
    InvalidTaskError,
    PayloadError,
    TaskContext,
    TaskManager,
)
from worker_core.durable import BatchEnqueueBackend, DurableHandlerSpec, DurableTask, DurableTaskLease
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class Email(msgspec.Struct):
    to: str


class OneByOne(ForwardingBackend[InMemoryDurableBackend]):
    """The in-memory backend without ``enqueue_many``, counting the calls that reach it."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.enqueues = 0
        self.batches: list[int] = []  # size of each enqueue_many call

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        self.inner.configure_queues(default_queue, weights)

    async def enqueue(self, task: DurableTask) -> None:
        self.enqueues += 1
        await self.inner.enqueue(task)

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        await self.inner.release(leases)

    async def wait_for_work(self, max_wait: float) -> None:
        await self.inner.wait_for_work(max_wait)


class Batching(OneByOne):
    """The in-memory backend with its ``enqueue_many``; ``batch_error`` makes the next batch call raise it."""

    batch_error: Exception | None = None

    async def enqueue_many(self, tasks: Sequence[DurableTask]) -> None:
        self.batches.append(len(tasks))
        if self.batch_error is not None:
            raise self.batch_error
        await self.inner.enqueue_many(tasks)


class Scheduled:
    """Instrumentation that records every ``on_scheduled`` record."""

    def __init__(self) -> None:
        self.records: list[DurableTask] = []

    def on_scheduled(self, record: DurableTask) -> None:
        self.records.append(record)


def durable_manager(backend: Any, fn: Any) -> TaskManager:
    return TaskManager(
        max_workers=4,
        tasks_per_second=None,
        max_retries=2,
        durable_backend=backend,
        durable_handlers={"email": DurableHandlerSpec(None, fn, payload_type=Email)},
        durable_poll_interval=0.01,
    )


async def send(ctx: TaskContext, payload: Email) -> None:
    return None


def email(to: str, **fields: Any) -> DurableTask:
    return DurableTask("email", Email(to), **fields)


def test_the_in_memory_backend_has_the_capability_and_the_wrapper_without_it_does_not() -> None:
    assert isinstance(InMemoryDurableBackend(), BatchEnqueueBackend)
    assert isinstance(Batching(), BatchEnqueueBackend)
    assert not isinstance(OneByOne(), BatchEnqueueBackend)


def test_exists_error_ids_are_optional_keep_the_message_and_survive_a_copy() -> None:
    plain = DurableTaskExistsError("durable task x already exists")
    assert plain.ids == ()
    assert str(plain) == "durable task x already exists"
    ids = [uuid.uuid4(), uuid.uuid4()]
    named = DurableTaskExistsError("2 durable task(s) already exist", ids=ids)
    assert named.ids == tuple(ids)
    assert str(named) == "2 durable task(s) already exist"
    copied = copy.deepcopy(named)  # rebuilt through __reduce_ex__, as pickle does (pickle is banned here)
    assert (type(copied), str(copied), copied.ids) == (DurableTaskExistsError, str(named), tuple(ids))


async def test_many_tasks_go_to_the_backend_in_one_call_and_all_run() -> None:
    backend, seen = Batching(), Scheduled()
    ran: list[str] = []

    async def record(ctx: TaskContext, payload: Email) -> None:
        ran.append(payload.to)

    async with durable_manager(backend, record) as tm:
        tm.add_instrumentation(seen)
        tm.set_max_workers(0)
        tasks = [email(f"u{i}@example.com") for i in range(200)]
        ids = await tm.register_durable_tasks(*tasks)
        assert backend.batches == [200]
        assert backend.enqueues == 0
        assert ids == [task.id for task in tasks]  # every task got its id, returned in the order given
        assert len(set(ids)) == 200
        assert tm.metrics().scheduled == 200
        assert [r.id for r in seen.records] == ids  # each accepted record once, as stored
        assert {r.queue for r in seen.records} == {"default"}
        tm.set_max_workers(4)
        await until(lambda: len(ran) == 200)
        await until(lambda: len(backend.inner) == 0)  # every task acked
    assert sorted(ran) == sorted(f"u{i}@example.com" for i in range(200))


async def test_no_tasks_means_no_backend_call() -> None:
    backend = Batching()
    async with durable_manager(backend, send) as tm:
        assert await tm.register_durable_tasks() == []
    assert backend.batches == []
    assert backend.enqueues == 0


@pytest.mark.parametrize("backend_type", [Batching, OneByOne])
async def test_rejections_are_grouped_and_the_others_registered(backend_type: type[OneByOne]) -> None:
    """Same contract with and without the capability: errors in order, the valid tasks registered."""
    backend, seen = backend_type(), Scheduled()
    async with durable_manager(backend, send) as tm:
        tm.set_max_workers(0)
        existing = await tm.register_durable_task(email("old@example.com"))
        tm.add_instrumentation(seen)
        good = email("a@example.com")
        twice = email("b@example.com")  # the same object given twice: its second copy is a duplicate
        same_id = uuid.uuid4()
        tasks = [
            good,
            email("dup@example.com", id=existing),
            DurableTask("sms", Email("x")),
            twice,
            email("c@example.com", id=same_id),
            DurableTask("email"),
            twice,
            email("c-again@example.com", id=same_id),
            email("bad", retries=-1),
        ]
        with pytest.raises(ExceptionGroup) as raised:
            await tm.register_durable_tasks(*tasks)
        group = raised.value
        assert str(group).startswith("6 of 9 durable tasks were not registered")
        assert [type(e) for e in group.exceptions] == [
            DurableTaskExistsError,
            HandlerNotFoundError,
            PayloadError,
            DurableTaskExistsError,
            DurableTaskExistsError,
            InvalidTaskError,
        ]
        assert {str(existing), str(twice.id), str(same_id)} == {
            str(e).split()[2] for e in group.exceptions if isinstance(e, DurableTaskExistsError)
        }
        accepted = [good.id, twice.id, same_id]
        assert all(task_id is not None for task_id in accepted)
        assert tm.metrics().scheduled == 1 + 3  # the earlier single task and the three accepted now
        assert [r.id for r in seen.records] == accepted
        stored = backend.inner.get(same_id)
        assert stored is not None
        assert msgspec.json.decode(stored.task.payload or b"", type=Email) == Email("c@example.com")  # first wins
        assert len(backend.inner) == 4
    if backend_type is Batching:
        assert backend.batches == [6]  # the six tasks that passed the manager's checks, in one call
        assert backend.enqueues == 1  # the single register_durable_task
    else:
        assert backend.batches == []
        assert backend.enqueues == 1 + 6


async def test_batch_duplicates_map_to_exactly_those_tasks() -> None:
    backend = Batching()
    async with durable_manager(backend, send) as tm:
        tm.set_max_workers(0)
        first = await tm.register_durable_tasks(*(email(f"{i}@example.com") for i in range(3)))
        fresh = [email("new1@example.com"), email("new2@example.com")]
        again = [email("dup@example.com", id=task_id) for task_id in first]
        with pytest.raises(ExceptionGroup) as raised:
            await tm.register_durable_tasks(fresh[0], again[0], again[1], fresh[1], again[2])
        errors = raised.value.exceptions
        assert all(isinstance(e, DurableTaskExistsError) for e in errors)
        assert [e.ids for e in errors if isinstance(e, DurableTaskExistsError)] == [(i,) for i in first]
        assert all(task.id is not None for task in fresh)
        assert tm.metrics().scheduled == 5
        assert len(backend.inner) == 5


@pytest.mark.parametrize(
    "error",
    [BackendUnavailableError("store unreachable"), DurableTaskExistsError("someone exists, which is not said")],
    ids=["unavailable", "exists-without-ids"],
)
async def test_a_failed_batch_call_rejects_every_task_it_carried(error: Exception) -> None:
    backend, seen = Batching(), Scheduled()
    backend.batch_error = error
    async with durable_manager(backend, send) as tm:
        tm.set_max_workers(0)
        tm.add_instrumentation(seen)
        tasks = [email("a@example.com"), DurableTask("sms", Email("x")), email("b@example.com")]
        with pytest.raises(ExceptionGroup) as raised:
            await tm.register_durable_tasks(*tasks)
        assert list(raised.value.exceptions) == [error, raised.value.exceptions[1], error]
        assert isinstance(raised.value.exceptions[1], HandlerNotFoundError)
        assert [task.id for task in tasks] == [None, None, None]  # nothing reported accepted
        assert tm.metrics().scheduled == 0
        assert seen.records == []
    assert backend.batches == [2]
