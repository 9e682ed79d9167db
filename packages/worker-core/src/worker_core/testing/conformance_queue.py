"""Conformance, the queue: enqueue, dequeue and ack, batch enqueue, fencing, ordering and concurrent consumers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from worker_core.durable.types import (
    BatchEnqueueBackend,
    DurableBackend,
    DurableTask,
    DurableTaskLease,
    QueueConfigurableBackend,
    QueueSettingsBackend,
)
from worker_core.errors import DurableTaskExistsError, InvalidTaskError, LeaseLostError

from .conformance_base import _LONG_LEASE, ConformanceBase

__all__ = ("QueueConformance",)


class QueueConformance(ConformanceBase):
    """Enqueue, dequeue, ack, batches, fencing tokens, ordering, consumers racing."""

    # -- enqueue / dequeue / ack ---------------------------------------------------------------------

    async def test_empty_dequeue_returns_empty_list(self, backend: DurableBackend) -> None:
        """An empty backend returns an empty list, not None and not an error."""
        assert await backend.dequeue(5, _LONG_LEASE) == []

    async def test_enqueue_dequeue_ack(self, backend: DurableBackend) -> None:
        """A task comes back with every field, attempts 1 and a token; it is held, then gone once acked."""
        task = self.make_task("send", b"hello", priority=2, weight=3, retries=4, retry_delay=1.5)
        await backend.enqueue(task)
        lease = await self.dequeue_one(backend)
        assert lease.lease_id == str(task.id)
        assert lease.task.id == task.id
        assert lease.task.handler == "send"
        assert lease.task.payload == b"hello"
        assert lease.task.priority == 2
        assert lease.task.weight == 3
        assert lease.task.queue == "default"
        assert lease.task.retries == 4
        assert lease.task.retry_delay == pytest.approx(1.5, abs=1e-3)
        assert lease.attempts == 1
        assert lease.max_retries == 4
        assert isinstance(lease.token, str)
        assert lease.token
        await self.assert_empty(backend)  # held: not handed out twice
        await backend.ack(lease)
        await self.advance(self.lease)
        await self.assert_empty(backend)  # acked: gone for good

    async def test_ack_twice_raises_lease_lost(self, backend: DurableBackend) -> None:
        """Acking an acked task raises LeaseLostError."""
        await backend.enqueue(self.make_task())
        lease = await self.dequeue_one(backend)
        await backend.ack(lease)
        with pytest.raises(LeaseLostError):
            await backend.ack(lease)

    async def test_dequeue_respects_limit(self, backend: DurableBackend) -> None:
        """A dequeue returns at most ``limit`` leases and every task exactly once."""
        ids = set()
        for _ in range(5):
            task = self.make_task()
            ids.add(str(task.id))
            await backend.enqueue(task)
        first = await backend.dequeue(3, _LONG_LEASE)
        second = await backend.dequeue(10, _LONG_LEASE)
        assert len(first) == 3
        assert len(second) == 2
        got = [lease.lease_id for lease in first + second]
        assert sorted(got) == sorted(ids)
        await self.assert_empty(backend)

    async def test_duplicate_id_is_rejected(self, backend: DurableBackend) -> None:
        """A second task with the same id raises DurableTaskExistsError (ready, leased or dead) and changes nothing."""
        task = self.make_task(payload=b"first")
        await backend.enqueue(task)
        with pytest.raises(DurableTaskExistsError):
            await backend.enqueue(self.make_task(payload=b"second", id=task.id))
        lease = await self.dequeue_one(backend)
        assert lease.task.payload == b"first"  # the original is untouched
        with pytest.raises(DurableTaskExistsError):  # still rejected while leased
            await backend.enqueue(self.make_task(id=task.id))
        await backend.fail(lease, "dead")
        with pytest.raises(DurableTaskExistsError):  # and while dead-lettered
            await backend.enqueue(self.make_task(id=task.id))

    async def test_payload_bytes_round_trip_exactly(self, backend: DurableBackend) -> None:
        """Payloads are opaque bytes: binary, empty and non-UTF-8 payloads come back byte for byte."""
        payloads = [bytes(range(256)) + b"\x00\xff\xfe\x80", b"", b"\xc3\x28 not utf-8 \xa0\xa1", b"\x00" * 1000]
        by_id: dict[str, bytes] = {}
        for payload in payloads:
            task = self.make_task(payload=payload)
            by_id[str(task.id)] = payload
            await backend.enqueue(task)
        leases = await backend.dequeue(len(payloads), _LONG_LEASE)
        assert len(leases) == len(payloads)
        for lease in leases:
            assert lease.task.payload == by_id[lease.lease_id]

    async def test_metadata_round_trips(self, backend: DurableBackend) -> None:
        """Metadata strings (unicode, empty, quotes) come back unchanged."""
        metadata = {"trace": "00-abc-def-01", "unicode": "héllo ✓", "empty": "", "quote": 'a "b" \\ c'}
        await backend.enqueue(self.make_task(metadata=dict(metadata)))
        lease = await self.dequeue_one(backend)
        assert lease.task.metadata == metadata

    # -- batch enqueue -------------------------------------------------------------------------------

    async def test_enqueue_many_stores_every_task_in_one_call(self, backend: DurableBackend) -> None:
        """One enqueue_many call stores every task with its fields; an empty batch stores nothing."""
        if not isinstance(backend, BatchEnqueueBackend):
            pytest.skip("backend does not implement BatchEnqueueBackend")
        await backend.enqueue_many([])
        await self.assert_empty(backend)
        tasks = [self.make_task(f"h{i}", str(i).encode(), priority=i % 3, metadata={"i": str(i)}) for i in range(25)]
        await backend.enqueue_many(tasks)
        leases = await backend.dequeue(len(tasks) + 5, _LONG_LEASE)
        got = {lease.lease_id: lease.task for lease in leases}
        assert sorted(got) == sorted(str(task.id) for task in tasks)
        for task in tasks:
            stored = got[str(task.id)]
            assert (stored.handler, stored.payload, stored.priority, stored.metadata) == (
                task.handler,
                task.payload,
                task.priority,
                task.metadata,
            )
        await self.assert_empty(backend)

    async def test_enqueue_many_skips_and_names_duplicates(self, backend: DurableBackend) -> None:
        """Ids stored before, or repeated in the batch (the first copy wins), are skipped and listed in ``ids``."""
        if not isinstance(backend, BatchEnqueueBackend):
            pytest.skip("backend does not implement BatchEnqueueBackend")
        old = self.make_task(payload=b"stored before")
        await backend.enqueue(old)
        first, second = self.make_task(payload=b"first copy"), self.make_task(payload=b"second")
        batch = [
            first,
            self.make_task(payload=b"again", id=old.id),
            second,
            self.make_task(payload=b"later copy", id=first.id),
            self.make_task(payload=b"third copy", id=first.id),
        ]
        with pytest.raises(DurableTaskExistsError) as raised:
            await backend.enqueue_many(batch)
        assert raised.value.ids == (old.id, first.id, first.id)  # one entry per skipped task, in batch order
        leases = await backend.dequeue(10, _LONG_LEASE)
        payloads = {lease.lease_id: lease.task.payload for lease in leases}
        assert payloads == {str(old.id): b"stored before", str(first.id): b"first copy", str(second.id): b"second"}
        for lease in leases:
            await backend.ack(lease)
        await self.assert_empty(backend)

    async def test_enqueue_many_with_an_invalid_task_stores_nothing(self, backend: DurableBackend) -> None:
        """Every task is checked before any is written: one without a payload rejects the whole batch."""
        if not isinstance(backend, BatchEnqueueBackend):
            pytest.skip("backend does not implement BatchEnqueueBackend")
        valid = [self.make_task() for _ in range(3)]
        broken = DurableTask("conformance", None, None, id=uuid.uuid4(), queue="default", retries=3)
        with pytest.raises(InvalidTaskError):
            await backend.enqueue_many([*valid, broken])
        await self.assert_empty(backend)
        await backend.enqueue_many(valid)  # nothing of the failed batch was stored: no id is a duplicate
        assert len(await backend.dequeue(10, _LONG_LEASE)) == len(valid)

    # -- fencing -------------------------------------------------------------------------------------

    async def test_stale_token_is_rejected_and_changes_nothing(self, backend: DurableBackend) -> None:
        """After redelivery, the old holder's ack/nack/fail/extend raise LeaseLostError and change nothing."""
        task = self.make_task()
        await backend.enqueue(task)
        stale = await self.dequeue_one(backend, lease=self.lease)
        await self.advance(self.lease)
        current = await self.poll_dequeue(backend)
        assert current.lease_id == stale.lease_id
        assert current.token != stale.token
        with pytest.raises(LeaseLostError):
            await backend.ack(stale)
        with pytest.raises(LeaseLostError):
            await backend.nack(stale, 0.0)
        with pytest.raises(LeaseLostError):
            await backend.fail(stale, "stale holder")
        with pytest.raises(LeaseLostError):
            await backend.extend(stale, _LONG_LEASE)
        # Nothing changed: the task is still held by the current lease (not requeued, not dead, not gone).
        await self.assert_empty(backend)
        assert str(task.id) not in await self.dead_letters(backend)
        await backend.extend(current, _LONG_LEASE)
        await backend.ack(current)
        await self.assert_empty(backend)

    async def test_forged_token_is_rejected(self, backend: DurableBackend) -> None:
        """A lease with the right id but another token is rejected."""
        await backend.enqueue(self.make_task())
        lease = await self.dequeue_one(backend)
        forged = DurableTaskLease(lease.task, lease.lease_id, lease.attempts, lease.max_retries, lease.token + "x")
        with pytest.raises(LeaseLostError):
            await backend.ack(forged)
        await backend.ack(lease)

    # -- ordering and scheduling ---------------------------------------------------------------------

    async def test_priority_then_weight_order(self, backend: DurableBackend) -> None:
        """Within a queue, the lowest priority goes first, then the highest weight."""
        specs = [("p3", 3, 1), ("p1w1", 1, 1), ("p2", 2, 5), ("p1w9", 1, 9), ("p1w4", 1, 4), ("p0", 0, 1)]
        for handler, priority, weight in specs:
            await backend.enqueue(self.make_task(handler, priority=priority, weight=weight))
        order = []
        for _ in specs:
            lease = await self.dequeue_one(backend)
            order.append(lease.task.handler)
            await backend.ack(lease)
        assert order == ["p0", "p1w9", "p1w4", "p1w1", "p2", "p3"]

    async def test_run_at_is_respected(self, backend: DurableBackend) -> None:
        """A task is not delivered before its run_at; a past run_at is ready at once."""
        later = datetime.fromtimestamp(self.now() + self.delay, tz=UTC)
        past = datetime.fromtimestamp(self.now() - 60, tz=UTC)
        delayed = self.make_task("later", run_at=later)
        await backend.enqueue(delayed)
        await backend.enqueue(self.make_task("past", run_at=past))
        first = await self.dequeue_one(backend)
        assert first.task.handler == "past"
        await self.assert_empty(backend)  # "later" is not due yet
        await self.advance(self.delay)
        lease = await self.poll_dequeue(backend)
        assert lease.lease_id == str(delayed.id)

    async def test_queue_weights_share_a_dequeue(self, backend: DurableBackend) -> None:
        """Queue weights share each dequeue (3:1), and an empty queue means the configured default queue."""
        if not isinstance(backend, QueueConfigurableBackend):
            pytest.skip("backend does not implement QueueConfigurableBackend")
        backend.configure_queues("main", {"heavy": 3, "light": 1})
        for _ in range(8):
            await backend.enqueue(self.make_task("h", queue="heavy"))
            await backend.enqueue(self.make_task("l", queue="light"))
        counts = {"heavy": 0, "light": 0}
        for _ in range(2):
            for lease in await backend.dequeue(4, _LONG_LEASE):
                counts[lease.task.queue] += 1
        assert counts == {"heavy": 6, "light": 2}
        await backend.enqueue(self.make_task("d", queue=""))
        seen = [lease.task for lease in await backend.dequeue(20, _LONG_LEASE)]
        default = [task for task in seen if task.handler == "d"]
        assert len(default) == 1
        assert default[0].queue == "main"  # an empty queue means the configured default queue

    async def test_queue_settings_report_what_was_configured(self, backend: DurableBackend) -> None:
        """``queue_settings()`` answers what ``configure_queues`` set (the manager reads it when given none)."""
        if not isinstance(backend, QueueSettingsBackend) or not isinstance(backend, QueueConfigurableBackend):
            pytest.skip("backend does not implement QueueSettingsBackend")
        backend.configure_queues("main", {"heavy": 3, "light": 1})
        default_queue, weights = backend.queue_settings()
        assert (default_queue, dict(weights)) == ("main", {"heavy": 3, "light": 1})

    # -- concurrency ---------------------------------------------------------------------------------

    async def test_concurrent_consumers_never_share_a_task(self, backend: DurableBackend) -> None:
        """Ten consumers share 200 tasks: no task is held twice at once, each is delivered once."""
        total = 200
        ids = set()
        for i in range(total):
            task = self.make_task(payload=str(i).encode())
            ids.add(str(task.id))
            await backend.enqueue(task)
        holding: set[str] = set()
        deliveries: dict[str, int] = {}
        overlaps: list[str] = []
        lost: list[str] = []
        done = asyncio.Event()

        async def consumer() -> None:
            while not done.is_set():
                leases = await backend.dequeue(3, _LONG_LEASE)
                if not leases:
                    await asyncio.sleep(0.005)
                    continue
                for lease in leases:
                    if lease.lease_id in holding:
                        overlaps.append(lease.lease_id)
                    holding.add(lease.lease_id)
                    deliveries[lease.lease_id] = deliveries.get(lease.lease_id, 0) + 1
                await asyncio.sleep(0)  # let the others dequeue while these are held
                for lease in leases:
                    holding.discard(lease.lease_id)
                    try:
                        await backend.ack(lease)
                    except LeaseLostError:
                        lost.append(lease.lease_id)
                if sum(deliveries.values()) >= total:
                    done.set()

        async with asyncio.timeout(self.patience * 6):
            async with asyncio.TaskGroup() as group:
                for _ in range(10):
                    group.create_task(consumer())
        assert overlaps == [], "a task was handed to two consumers at once"
        assert lost == [], "an ack of a freshly leased task was rejected"
        assert set(deliveries) == ids
        assert all(count == 1 for count in deliveries.values())
        await self.assert_empty(backend)
