"""Conformance, leases and retries: expiry, extend, the delivery limit, nack, fail and the DLQ, release."""

from __future__ import annotations

import pytest

from worker_core.durable.outcomes import DELIVERY_LIMIT_ERROR, ResultStoreBackend
from worker_core.durable.types import (
    BatchExtendBackend,
    DurableBackend,
    ReleasableBackend,
    delivery_limit,
)
from worker_core.errors import LeaseLostError
from worker_core.status import TaskStatus

from .conformance_base import _LONG_LEASE, ConformanceBase

__all__ = ("LeaseConformance",)


class LeaseConformance(ConformanceBase):
    """Lease expiry and renewal, the delivery limit, nack delays, dead letters, release."""

    # -- leases, expiry, extend ----------------------------------------------------------------------

    async def test_expired_lease_is_redelivered_with_attempts_plus_one(self, backend: DurableBackend) -> None:
        """A lease not acked in time is redelivered with attempts + 1 and a new token."""
        task = self.make_task()
        await backend.enqueue(task)
        first = await self.dequeue_one(backend, lease=self.lease)
        assert first.attempts == 1
        await self.assert_empty(backend)  # not before the lease expires
        await self.advance(self.lease)
        second = await self.poll_dequeue(backend)
        assert second.lease_id == str(task.id)
        assert second.attempts == 2
        assert second.token != first.token
        await backend.ack(second)

    async def test_extend_prevents_redelivery(self, backend: DurableBackend) -> None:
        """An extended lease outlives its original expiry and stays with its holder."""
        await backend.enqueue(self.make_task())
        lease = await self.dequeue_one(backend, lease=self.lease)
        await backend.extend(lease, _LONG_LEASE)
        await self.advance(self.lease * 2)
        await self.assert_empty(backend)
        await backend.ack(lease)  # still the holder

    async def test_extend_many_renews_held_leases_and_reports_lost_ones(self, backend: DurableBackend) -> None:
        """``extend_many`` renews every lease still held in one call and reports the others as lost."""
        if not isinstance(backend, BatchExtendBackend):
            pytest.skip("backend has no extend_many")
        for _ in range(3):
            await backend.enqueue(self.make_task())
        leases = await backend.dequeue(3, self.lease)
        assert len(leases) == 3
        await backend.ack(leases[1])
        assert await backend.extend_many(leases, _LONG_LEASE) == [True, False, True]
        assert await backend.extend_many(leases, _LONG_LEASE) == [True, False, True]  # safe to repeat
        await self.advance(self.lease * 2)
        await self.assert_empty(backend)  # the renewed leases outlived their first expiry
        await backend.ack(leases[0])
        await backend.ack(leases[2])

    async def test_delivery_limit_dead_letters_a_task_that_is_never_settled(self, backend: DurableBackend) -> None:
        """A task delivered ``retries + 1 + extra`` times without being settled is dead-lettered.

        Its worker died on each delivery; the reason starts with "delivery limit" and it is not delivered again.
        """
        task = self.make_task(retries=0)
        await backend.enqueue(task)
        limit = delivery_limit(0, self.extra_deliveries)
        for delivery in range(1, limit + 1):
            lease = await self.poll_dequeue(backend, lease=self.lease)
            assert lease.attempts == delivery
            await self.advance(self.lease)  # the worker "dies": the lease expires unsettled
        await self.advance(self.lease)
        await self.assert_empty(backend)
        dead = await self.dead_letters(backend)
        assert dead[str(task.id)].startswith("delivery limit")
        if isinstance(backend, ResultStoreBackend):  # whoever awaits it learns it failed, and why
            outcome = await backend.get_outcome(task.id)  # type: ignore[arg-type]
            assert outcome is not None, "a task dead-lettered by the delivery limit stores a FAILED outcome"
            assert outcome.status is TaskStatus.FAILED
            assert outcome.error_type == DELIVERY_LIMIT_ERROR
            assert outcome.error_message.startswith("delivery limit")
            assert outcome.attempts == limit
            assert (outcome.handler, outcome.queue) == (task.handler, task.queue)

    # -- nack, fail, dead letters --------------------------------------------------------------------

    async def test_nack_delays_the_next_delivery(self, backend: DurableBackend) -> None:
        """A nacked task is not delivered before the delay, and is after it, with attempts + 1."""
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        await backend.nack(lease, self.delay)
        await self.assert_empty(backend)  # not before the delay
        await self.advance(self.delay)
        again = await self.poll_dequeue(backend)
        assert again.lease_id == str(task.id)
        assert again.attempts == 2
        with pytest.raises(LeaseLostError):  # the nacked lease is no longer held
            await backend.ack(lease)
        await backend.ack(again)

    async def test_nack_with_zero_delay_is_ready_at_once(self, backend: DurableBackend) -> None:
        """A nack without delay makes the task ready at once."""
        await backend.enqueue(self.make_task())
        lease = await self.dequeue_one(backend)
        await backend.nack(lease, 0.0)
        again = await self.poll_dequeue(backend)
        assert again.attempts == 2

    async def test_fail_moves_task_to_dead_letters_with_error(self, backend: DurableBackend) -> None:
        """A failed task is dead-lettered with its error text and never redelivered; others are unaffected."""
        task = self.make_task()
        keep = self.make_task()
        await backend.enqueue(task)
        await backend.enqueue(keep)
        lease = await self.dequeue_one(backend)
        other = await self.dequeue_one(backend)
        if lease.lease_id != str(task.id):
            lease, other = other, lease
        await backend.fail(lease, "boom: handler raised ValueError('é ✓')")
        dead = await self.dead_letters(backend)
        assert dead == {str(task.id): "boom: handler raised ValueError('é ✓')"}
        await backend.nack(other, 0.0)  # the other task is unaffected
        again = await self.poll_dequeue(backend)
        assert again.lease_id == str(keep.id)
        await self.assert_empty(backend)  # the dead task is never redelivered

    # -- release -------------------------------------------------------------------------------------

    async def test_release_returns_tasks_without_counting_an_attempt(self, backend: DurableBackend) -> None:
        """Released leases are ready at once, their attempt is not counted and their token is void."""
        if not isinstance(backend, ReleasableBackend):
            pytest.skip("backend does not implement ReleasableBackend")
        task = self.make_task()
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        await backend.release([lease])
        again = await self.dequeue_one(backend)  # at once, no lease expiry needed
        assert again.lease_id == str(task.id)
        assert again.attempts == 1
        assert again.token != lease.token
        with pytest.raises(LeaseLostError):
            await backend.ack(lease)
        await backend.ack(again)
