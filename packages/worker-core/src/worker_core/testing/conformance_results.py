"""Conformance, idempotency keys and stored results (both optional protocols: skipped when not implemented)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from worker_core.durable.types import (
    BatchEnqueueBackend,
    DurableBackend,
)
from worker_core.errors import DurableTaskExistsError, LeaseLostError
from worker_core.status import TaskStatus

from .conformance_base import _LONG_LEASE, ConformanceBase

__all__ = ("ResultConformance",)


class ResultConformance(ConformanceBase):
    """Idempotency keys (``IdempotencyKeyBackend``) and outcomes (``ResultStoreBackend``)."""

    async def test_idempotency_key_admits_one_live_task(self, backend: DurableBackend) -> None:
        """A second task with a live task's key is rejected, whether the first is ready or leased."""
        self._require_keys(backend)
        first = self.make_task(idempotency_key="order-1")
        await backend.enqueue(first)
        second = self.make_task(idempotency_key="order-1")
        with pytest.raises(DurableTaskExistsError):
            await backend.enqueue(second)
        lease = await self.dequeue_one(backend)
        assert lease.lease_id == str(first.id)
        assert lease.task.idempotency_key == "order-1"
        with pytest.raises(DurableTaskExistsError):
            await backend.enqueue(second)
        await backend.enqueue(self.make_task(idempotency_key="order-2"))  # another key is another task

    async def test_idempotency_key_is_free_again_after_ack_or_dead_letter(self, backend: DurableBackend) -> None:
        """Once its task is acked or dead-lettered, the key admits a new task; a nack keeps it held."""
        self._require_keys(backend)
        await backend.enqueue(self.make_task(idempotency_key="k"))
        lease = await self.dequeue_one(backend)
        await backend.nack(lease, 0)
        with pytest.raises(DurableTaskExistsError):
            await backend.enqueue(self.make_task(idempotency_key="k"))
        await backend.ack(await self.dequeue_one(backend))
        again = self.make_task(idempotency_key="k")
        await backend.enqueue(again)
        await backend.fail(await self.dequeue_one(backend), "boom")
        await backend.enqueue(self.make_task(idempotency_key="k"))

    async def test_enqueue_many_skips_tasks_whose_key_is_held(self, backend: DurableBackend) -> None:
        """A held key, or one repeated within the batch, skips that task and names it; the others are stored."""
        self._require_keys(backend)
        if not isinstance(backend, BatchEnqueueBackend):
            pytest.skip("the backend does not implement BatchEnqueueBackend")
        await backend.enqueue(self.make_task(idempotency_key="held"))
        held, fresh, first, repeat = (
            self.make_task(idempotency_key="held"),
            self.make_task(),
            self.make_task(idempotency_key="new"),
            self.make_task(idempotency_key="new"),
        )
        with pytest.raises(DurableTaskExistsError) as info:
            await backend.enqueue_many([held, fresh, first, repeat])
        assert list(info.value.ids) == [held.id, repeat.id]
        leased = {lease.lease_id for lease in await backend.dequeue(10, _LONG_LEASE)}
        assert {str(fresh.id), str(first.id)} <= leased
        assert str(held.id) not in leased
        assert str(repeat.id) not in leased

    async def test_ack_with_outcome_acks_and_stores_it(self, backend: DurableBackend) -> None:
        """Ack with outcome acks and stores it."""
        store = self._store(backend)
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        assert task.id is not None
        assert await store.get_outcome(task.id) is None
        outcome = self.make_outcome(lease, result=b'{"answer":42}')
        await store.ack_with_outcome(lease, outcome, 60.0)
        assert await store.get_outcome(task.id) == outcome
        assert (await store.get_outcome(task.id) or outcome).value() == {"answer": 42}
        with pytest.raises(LeaseLostError):
            await backend.ack(lease)  # acked by the call above
        await self.assert_empty(backend)

    async def test_fail_with_outcome_dead_letters_and_stores_it(self, backend: DurableBackend) -> None:
        """Fail with outcome dead letters and stores it."""
        store = self._store(backend)
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        outcome = self.make_outcome(lease, TaskStatus.FAILED, error_type="ValueError", error_message="bad")
        await store.fail_with_outcome(lease, "ValueError: bad", outcome, 60.0)
        assert task.id is not None
        assert await store.get_outcome(task.id) == outcome
        assert "ValueError: bad" in (await self.dead_letters(backend))[str(task.id)]

    async def test_a_lost_lease_stores_no_outcome(self, backend: DurableBackend) -> None:
        """A lost lease stores no outcome."""
        store = self._store(backend)
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        await backend.ack(lease)
        with pytest.raises(LeaseLostError):
            await store.ack_with_outcome(lease, self.make_outcome(lease), 60.0)
        assert task.id is not None
        assert await store.get_outcome(task.id) is None

    async def test_wait_outcome_wakes_when_it_is_stored(self, backend: DurableBackend) -> None:
        """Wait outcome wakes when it is stored."""
        store = self._store(backend)
        task = self.make_task()
        await backend.enqueue(task)
        assert task.id is not None
        waiter = asyncio.create_task(store.wait_outcome(task.id, self.patience))
        await asyncio.sleep(0)
        lease = await self.dequeue_one(backend)
        outcome = self.make_outcome(lease)
        await store.ack_with_outcome(lease, outcome, 60.0)
        async with asyncio.timeout(self.patience):
            assert await waiter == outcome
        assert await store.wait_outcome(task.id, 0.01) == outcome  # already stored: at once
        assert await store.wait_outcome(uuid.uuid4(), 0.01) is None  # never stored: after the wait

    async def test_outcomes_expire_after_their_ttl(self, backend: DurableBackend) -> None:
        """Outcomes expire after their ttl."""
        store = self._store(backend)
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        await store.ack_with_outcome(lease, self.make_outcome(lease), self.lease)
        assert task.id is not None
        assert await store.get_outcome(task.id) is not None
        await self.advance(self.lease * 2 + 0.1)
        assert await store.get_outcome(task.id) is None

    async def test_recent_outcomes_newest_first_per_queue(self, backend: DurableBackend) -> None:
        """Recent outcomes newest first per queue."""
        store = self._store(backend)
        ids = []
        for n in range(3):
            task = self.make_task(queue="recent-a", priority=n)
            other = self.make_task(queue="recent-b")
            await backend.enqueue(task)
            await backend.enqueue(other)
            for _ in range(2):
                lease = await self.dequeue_one(backend)
                await store.ack_with_outcome(lease, self.make_outcome(lease), 60.0)
            ids.append(task.id)
        recent = await store.recent_outcomes("recent-a", 10)
        assert [o.id for o in recent] == ids[::-1]
        assert len(await store.recent_outcomes("recent-a", 2)) == 2
        assert {o.queue for o in await store.recent_outcomes("recent-b", 10)} == {"recent-b"}
