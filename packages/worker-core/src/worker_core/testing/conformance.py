"""A reusable pytest suite that checks a durable backend against the whole contract.

A backend's tests subclass :class:`DurableBackendConformance` and provide a ``backend`` fixture (sync or
async; pytest-asyncio's auto mode runs the async tests). Time passes through :meth:`advance`, which
really sleeps by default; a backend with an injectable clock overrides it (and :meth:`now`) to move a
:class:`~worker_core.testing.FakeClock` instead. Dead letters are read through :meth:`dead_letters`,
which uses ``backend.dead_letters()`` when the backend has it; override it otherwise::

    import pytest
    from worker_core.testing import DurableBackendConformance


    class TestRedisConformance(DurableBackendConformance):
        @pytest.fixture
        async def backend(self, redis_url):
            backend = RedisDurableBackend.from_url(redis_url)
            yield backend
            await backend.close()

        async def dead_letters(self, backend):
            return {entry.id: entry.last_error for entry in await backend.admin_dlq()}

With real time, the lease-expiry tests wait about ``lease`` (0.5 s) or ``delay`` (0.5 s) each, then poll
for the expected state with a generous deadline (``patience`` seconds), so a slow machine makes them
slower, not flaky. Optional protocols (``BatchEnqueueBackend``, ``ReleasableBackend``,
``QueueConfigurableBackend``, ``ResultStoreBackend``) are tested when the backend implements them and skipped otherwise.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from worker_core.durable.outcomes import DELIVERY_LIMIT_ERROR, ResultStoreBackend, TaskOutcome
from worker_core.durable.types import (
    DEFAULT_EXTRA_DELIVERIES,
    BatchEnqueueBackend,
    BatchExtendBackend,
    DurableBackend,
    DurableTask,
    DurableTaskLease,
    IdempotencyKeyBackend,
    QueueConfigurableBackend,
    ReleasableBackend,
    delivery_limit,
)
from worker_core.errors import DurableTaskExistsError, InvalidTaskError, LeaseLostError
from worker_core.status import TaskStatus

__all__ = ("DurableBackendConformance",)

_LONG_LEASE = 30.0


class DurableBackendConformance:
    """Contract tests for a :class:`~worker_core.durable.types.DurableBackend`; subclass and add a ``backend`` fixture.

    Overridable:
        lease: Lease, in seconds, of the expiry tests (short: they wait for it).
        delay: Nack delay and ``run_at`` offset, in seconds, of the delay tests.
        patience: Seconds to poll for an expected delivery before failing.
        advance: Let time pass (real sleep by default).
        now: The backend's current epoch time (``time.time()`` by default).
        dead_letters: ``{task id: last error}`` of the backend's dead-letter queue.
        extra_deliveries: The backend's deliveries beyond ``retries + 1`` (its delivery limit).
    """

    lease: ClassVar[float] = 0.5
    delay: ClassVar[float] = 0.5
    patience: ClassVar[float] = 10.0
    extra_deliveries: ClassVar[int] = DEFAULT_EXTRA_DELIVERIES
    poll_step: ClassVar[float] = 0.05

    # -- hooks a subclass may override ---------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the backend's clock (a real sleep unless overridden)."""
        await asyncio.sleep(seconds)

    def now(self) -> float:
        """The backend's current time in epoch seconds."""
        return time.time()

    async def dead_letters(self, backend: Any) -> Mapping[str, str]:
        """``{task id: last error}`` for every dead-lettered task (uses ``backend.dead_letters()``)."""
        lister = getattr(backend, "dead_letters", None)
        if lister is None:
            pytest.skip("override dead_letters() to inspect this backend's dead-letter queue")
        entries = lister()
        if asyncio.iscoroutine(entries):
            entries = await entries
        return {str(entry.task.id): entry.error for entry in entries}

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def make_task(
        handler: str = "conformance",
        payload: bytes = b"payload",
        **fields: Any,
    ) -> DurableTask:
        """A task as the manager hands it to a backend: id, payload, queue, retries and retry delay set."""
        fields.setdefault("id", uuid.uuid4())
        fields.setdefault("queue", "default")
        fields.setdefault("retries", 3)
        fields.setdefault("retry_delay", 1.0)
        return DurableTask(handler, None, payload, **fields)

    async def dequeue_one(self, backend: DurableBackend, lease: float = _LONG_LEASE) -> DurableTaskLease:
        """Dequeue exactly one lease, failing the test if there is none or more."""
        leases = await backend.dequeue(1, lease)
        assert len(leases) == 1, f"expected one lease, got {len(leases)}"
        return leases[0]

    async def poll_dequeue(self, backend: DurableBackend, lease: float = _LONG_LEASE) -> DurableTaskLease:
        """Advance time in small steps until a dequeue returns a lease (fails after ``patience`` seconds)."""
        steps = max(int(self.patience / self.poll_step), 1)
        for _ in range(steps):
            leases = await backend.dequeue(1, lease)
            if leases:
                assert len(leases) == 1
                return leases[0]
            await self.advance(self.poll_step)
        pytest.fail(f"no task was delivered within {self.patience} s")

    async def assert_empty(self, backend: DurableBackend) -> None:
        """Nothing is ready right now."""
        leases = await backend.dequeue(10, _LONG_LEASE)
        assert leases == [], f"expected no ready task, got {[lease.lease_id for lease in leases]}"

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

    # -- result store (ResultStoreBackend, optional) -------------------------------------------------

    def _store(self, backend: DurableBackend) -> ResultStoreBackend:
        if not isinstance(backend, ResultStoreBackend):
            pytest.skip("the backend stores no task results")
        return backend

    @staticmethod
    def make_outcome(lease: DurableTaskLease, status: TaskStatus = TaskStatus.COMPLETED, **fields: Any) -> TaskOutcome:
        """An outcome of the attempt of ``lease``, as the manager builds one."""
        record = lease.task
        assert record.id is not None
        return TaskOutcome(
            id=record.id,
            handler=record.handler,
            queue=record.queue,
            status=status,
            attempts=lease.attempts,
            finished_at=time.time(),
            **fields,
        )

    # -- idempotency keys (IdempotencyKeyBackend) ---------------------------------------------------

    @staticmethod
    def _require_keys(backend: DurableBackend) -> None:
        if not isinstance(backend, IdempotencyKeyBackend):
            pytest.skip("the backend does not implement IdempotencyKeyBackend")

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
