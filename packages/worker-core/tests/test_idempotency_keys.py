"""``DurableTask.idempotency_key`` through a real TaskManager: one live task per key on a backend that honours
keys, a typed refusal on one that does not, and bad keys refused before anything is stored."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from worker_core import DurableTaskExistsError, InvalidTaskError, TaskContext, TaskManager
from worker_core.durable import DurableBackend, DurableHandlerSpec, DurableTask, IdempotencyKeyBackend
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class Order(msgspec.Struct):
    number: int


def manager(backend: DurableBackend, seen: list[int], gate: asyncio.Event) -> TaskManager:
    async def handle(ctx: TaskContext, order: Order) -> None:
        await gate.wait()
        seen.append(order.number)

    return TaskManager(
        max_workers=2,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"order": DurableHandlerSpec(None, handle, payload_type=Order)},
        durable_poll_interval=0.01,
    )


async def test_a_key_admits_one_live_task_and_is_free_after_it_finished() -> None:
    backend = InMemoryDurableBackend()
    assert isinstance(backend, IdempotencyKeyBackend)
    seen: list[int] = []
    gate = asyncio.Event()
    async with manager(backend, seen, gate) as tm:
        first = await tm.register_durable_task(DurableTask("order", Order(1), idempotency_key="order-1"))
        with pytest.raises(DurableTaskExistsError):
            await tm.register_durable_task(DurableTask("order", Order(2), idempotency_key="order-1"))
        gate.set()
        outcome = await tm.durable_outcome(first, wait=10)
        assert outcome is not None
        third = await tm.register_durable_task(DurableTask("order", Order(3), idempotency_key="order-1"))
        assert await tm.durable_outcome(third, wait=10) is not None
    assert seen == [1, 3]


async def test_a_backend_without_keys_refuses_a_task_that_has_one() -> None:
    backend = ForwardingBackend(InMemoryDurableBackend())
    assert not isinstance(backend, IdempotencyKeyBackend)
    async with manager(backend, [], asyncio.Event()) as tm:
        with pytest.raises(InvalidTaskError, match="does not support idempotency keys"):
            await tm.register_durable_task(DurableTask("order", Order(1), idempotency_key="k"))
        assert len(backend.inner) == 0


@pytest.mark.parametrize("key", ["", "   ", "x" * 513, 7])
async def test_bad_keys_are_refused_before_anything_is_stored(key: object) -> None:
    backend = InMemoryDurableBackend()
    async with manager(backend, [], asyncio.Event()) as tm:
        with pytest.raises(InvalidTaskError, match="idempotency_key"):
            await tm.register_durable_task(DurableTask("order", Order(1), idempotency_key=key))  # type: ignore[arg-type]
    assert len(backend) == 0
