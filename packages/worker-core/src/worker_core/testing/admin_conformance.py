"""Contract tests for a :class:`~worker_core.admin.DurableAdmin`, run against a real store.

A backend's tests subclass :class:`DurableAdminConformance` and provide two fixtures over the *same* store
(sync or async): ``backend`` (its :class:`~worker_core.durable.types.DurableBackend`) and ``admin`` (its
admin). The tests write through the backend as a worker would and check what the admin reads and does::

    class TestRedisAdminConformance(DurableAdminConformance):
        @pytest.fixture
        async def backend(self, server, prefix):
            ...

        @pytest.fixture
        async def admin(self, server, prefix):
            ...

Each test starts from an empty store. The suite needs pytest and an asyncio test runner (pytest-asyncio in
auto mode, as this repository uses).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, ClassVar

import pytest

from worker_core.admin import DurableAdmin, TaskState
from worker_core.durable.outcomes import ResultStoreBackend, TaskOutcome
from worker_core.durable.types import (
    BatchExtendBackend,
    DurableBackend,
    DurableTask,
    DurableTaskLease,
    FailureReason,
    NodeRegistryBackend,
    QueueConfigurableBackend,
)
from worker_core.errors import ConfigurationError, LeaseLostError, TaskNotFoundError
from worker_core.status import TaskStatus

__all__ = ("DurableAdminConformance",)

_LEASE = 30.0


class DurableAdminConformance:
    """The admin operations every backend's :class:`~worker_core.admin.DurableAdmin` must get right."""

    #: Queues the tests use (a backend may need them configured).
    queues: ClassVar[tuple[str, ...]] = ("default", "emails")

    @staticmethod
    def make_task(handler: str = "send", queue: str = "default", **fields: Any) -> DurableTask:
        """A task as the manager hands it to a backend."""
        fields.setdefault("id", uuid.uuid4())
        fields.setdefault("retries", 3)
        fields.setdefault("retry_delay", 1.0)
        return DurableTask(handler, None, b"payload", queue=queue, **fields)

    async def put(self, backend: DurableBackend, *tasks: DurableTask) -> list[str]:
        """Enqueue ``tasks``; their ids as strings."""
        for task in tasks:
            await backend.enqueue(task)
        return [str(task.id) for task in tasks]

    async def lease_all(self, backend: DurableBackend, n: int) -> list[DurableTaskLease]:
        """Lease exactly ``n`` tasks."""
        leases: list[DurableTaskLease] = []
        while len(leases) < n:
            got = await backend.dequeue(n - len(leases), _LEASE)
            assert got, f"expected {n} leases, got {len(leases)}"
            leases.extend(got)
        return leases

    async def dead(self, backend: DurableBackend, *tasks: DurableTask, error: str = "boom") -> list[str]:
        """Enqueue ``tasks`` and fail each for good (one at a time, so the DLQ order is theirs)."""
        ids = []
        for task in tasks:
            await backend.enqueue(task)
            (lease,) = await self.lease_all(backend, 1)
            assert lease.lease_id == str(task.id)
            await backend.fail(lease, FailureReason(error, "ValueError", "Traceback (most recent call last):\n..."))
            ids.append(str(task.id))
        return ids

    # -- protocol and reads ----------------------------------------------------------------------------

    async def test_implements_the_protocol(self, admin: DurableAdmin) -> None:
        """The admin satisfies :class:`DurableAdmin` and names where it is without a password."""
        assert isinstance(admin, DurableAdmin)
        assert admin.where
        await admin.ping()

    async def test_overview_counts_ready_processing_and_dead_per_queue(
        self, backend: DurableBackend, admin: DurableAdmin
    ) -> None:
        """Ready, leased and dead tasks are counted in their queues; the totals add up."""
        await self.dead(backend, self.make_task(queue="emails"))
        await self.put(backend, *(self.make_task() for _ in range(3)), self.make_task(queue="emails"))
        await self.lease_all(backend, 1)
        overview = await admin.overview()
        by_name = {q.name: q for q in overview.queues}
        assert {"default", "emails"} <= set(by_name)
        assert by_name["default"].ready + by_name["emails"].ready == 3
        assert overview.total_processing == 1
        assert overview.dead == 1
        assert await admin.dlq_size() == 1
        assert {"default", "emails"} <= set(await admin.queue_names())
        assert not overview.paused

    async def test_get_reads_one_task_wherever_it_is(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """``get`` returns the stored fields and state; an unknown id raises TaskNotFoundError."""
        task = self.make_task("resize", priority=4, metadata={"tenant": "a"})
        (task_id,) = await self.put(backend, task)
        record = await admin.get(task_id)
        assert (record.id, record.status, record.handler, record.queue) == (
            task_id,
            TaskState.READY,
            "resize",
            "default",
        )
        assert record.priority == 4
        assert record.metadata == {"tenant": "a"}
        assert record.payload_size == len(b"payload")
        await self.lease_all(backend, 1)
        record = await admin.get(task_id)
        assert record.status is TaskState.PROCESSING
        assert record.attempts == 1
        with pytest.raises(TaskNotFoundError):
            await admin.get(str(uuid.uuid4()))

    async def test_missing_ids_names_only_unknown_ids(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """``missing_ids`` keeps the order of the ids it was given."""
        (known,) = await self.put(backend, self.make_task())
        unknown = [str(uuid.uuid4()), str(uuid.uuid4())]
        assert await admin.missing_ids([unknown[0], known, unknown[1]]) == unknown

    async def test_ids_from_each_source(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """``ids_from`` lists ready (per queue), processing and dead ids; an unknown source is refused."""
        dead = await self.dead(backend, self.make_task(queue="default"))
        await self.put(backend, self.make_task(queue="emails"))
        (leased,) = await self.lease_all(backend, 1)
        ready = await self.put(backend, self.make_task(queue="emails"))
        assert await admin.ids_from("ready", from_queue="emails") == ready
        assert await admin.ids_from("processing", from_queue="emails") == [leased.lease_id]
        assert await admin.ids_from("dlq") == dead
        with pytest.raises(ConfigurationError):
            await admin.ids_from("everywhere")

    async def heartbeat(self, backend: DurableBackend) -> None:
        """Register ``backend`` as a worker node and send one heartbeat, as a manager does at start."""
        if not isinstance(backend, NodeRegistryBackend) or not isinstance(backend, BatchExtendBackend):
            pytest.skip("the backend does not implement NodeRegistryBackend and BatchExtendBackend")
        backend.register_node({"host": "conformance", "pid": 1, "started": round(time.time(), 3)}, lambda: 0)
        await backend.extend_many([], _LEASE)

    async def test_a_leased_task_names_the_node_holding_it(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """``leased_by`` of a processing task is the id its node registered under; other states have none."""
        await self.heartbeat(backend)
        (node,) = await admin.nodes()
        (dead,) = await self.dead(backend, self.make_task())
        (leased,) = await self.put(backend, self.make_task())
        await self.lease_all(backend, 1)
        (ready,) = await self.put(backend, self.make_task())
        assert (await admin.get(leased)).leased_by == node.id
        assert (await admin.get(ready)).leased_by == ""
        assert (await admin.get(dead)).leased_by == ""
        await admin.requeue([leased])
        assert (await admin.get(leased)).leased_by == ""

    async def test_a_node_reports_its_queue_weights(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """A node registered after ``configure_queues`` lists the weights it dequeues with."""
        if not isinstance(backend, QueueConfigurableBackend):
            pytest.skip("the backend does not implement QueueConfigurableBackend")
        backend.configure_queues("default", {"emails": 3})
        await self.heartbeat(backend)
        (node,) = await admin.nodes()
        assert node.weights == {"emails": 3}
        assert node.to_json()["weights"] == {"emails": 3}

    # -- pause -------------------------------------------------------------------------------------------

    async def test_pause_stops_leasing_and_resume_restarts_it(
        self, backend: DurableBackend, admin: DurableAdmin
    ) -> None:
        """While paused nothing is leased; the flag is in the pause state and the overview."""
        await self.put(backend, self.make_task())
        await admin.pause()
        assert (await admin.pause_state()).paused
        assert (await admin.overview()).paused
        assert await backend.dequeue(10, _LEASE) == []
        await admin.resume()
        assert not (await admin.pause_state()).paused
        assert len(await backend.dequeue(10, _LEASE)) == 1

    async def test_pause_queue_stops_only_that_queue(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """A paused queue is skipped; the other queues are still leased."""
        (mail,) = await self.put(backend, self.make_task(queue="emails"))
        (other,) = await self.put(backend, self.make_task(queue="default"))
        await admin.pause_queue("emails")
        assert "emails" in (await admin.pause_state()).paused_queues
        assert [lease.lease_id for lease in await backend.dequeue(10, _LEASE)] == [other]
        await admin.resume_queue("emails")
        assert "emails" not in (await admin.pause_state()).paused_queues
        assert [lease.lease_id for lease in await backend.dequeue(10, _LEASE)] == [mail]

    # -- DLQ ---------------------------------------------------------------------------------------------

    async def test_dlq_pages_newest_first_and_filters(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """Newest first; ``queue`` and ``handler`` match exactly; ``query`` is a case-insensitive substring."""
        first, second, third = await self.dead(
            backend,
            self.make_task("send", "emails"),
            self.make_task("resize", "default"),
            self.make_task("send", "default"),
        )
        page = await admin.dlq()
        assert [e.id for e in page.entries] == [third, second, first]
        assert page.total == 3
        assert [e.id for e in (await admin.dlq(queue="emails")).entries] == [first]
        assert [e.id for e in (await admin.dlq(handler="send")).entries] == [third, first]
        assert [e.id for e in (await admin.dlq(query="RESIZE")).entries] == [second]
        assert [e.id for e in (await admin.dlq(limit=1, offset=1)).entries] == [second]
        entry = page.entries[0]
        assert entry.last_error == "boom"
        assert entry.attempts == 1

    async def test_dlq_entry_has_error_type_and_traceback(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """A dead task's detail carries the reason, the exception type and the traceback."""
        (task_id,) = await self.dead(backend, self.make_task(metadata={"k": "v"}))
        detail = await admin.dlq_entry(task_id)
        assert detail.entry.id == task_id
        assert detail.entry.last_error == "boom"
        assert detail.error_type == "ValueError"
        assert detail.traceback.startswith("Traceback")
        assert detail.metadata == {"k": "v"}
        (ready,) = await self.put(backend, self.make_task())
        with pytest.raises(TaskNotFoundError):
            await admin.dlq_entry(ready)
        with pytest.raises(TaskNotFoundError):
            await admin.dlq_entry(str(uuid.uuid4()))

    async def test_replay_dlq_oldest_first_up_to_limit(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """Replayed tasks are leased again; ``reset_attempts`` starts their count over."""
        first, second = await self.dead(backend, self.make_task(), self.make_task())
        moved = await admin.replay_dlq(1, reset_attempts=True)
        assert moved.count == 1
        assert await admin.dlq_size() == 1
        (lease,) = await self.lease_all(backend, 1)
        assert lease.lease_id == first
        assert lease.attempts == 1
        assert (await admin.replay_dlq(0)).count == 1
        (lease,) = await self.lease_all(backend, 1)
        assert lease.lease_id == second
        assert await admin.dlq_size() == 0

    async def test_replay_dlq_ids_reports_missing(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """Replay by id moves the named dead tasks; ids that exist nowhere are listed, nothing is created."""
        (dead,) = await self.dead(backend, self.make_task())
        nowhere = str(uuid.uuid4())
        moved = await admin.replay_dlq_ids([dead, nowhere])
        assert moved.count == 1
        assert moved.missing == (nowhere,)
        assert (await admin.get(dead)).status is TaskState.READY
        with pytest.raises(TaskNotFoundError):
            await admin.get(nowhere)

    async def test_a_replayed_task_forgets_the_outcome_of_its_failed_run(
        self, backend: DurableBackend, admin: DurableAdmin
    ) -> None:
        """A replay leaves no outcome of the earlier run: a handle awaited after it waits for the new run.

        Otherwise the handle would raise the old failure at once, whatever the new run does.
        """
        if not isinstance(backend, ResultStoreBackend):
            pytest.skip("the backend does not implement ResultStoreBackend")
        first, second = self.make_task(), self.make_task()
        for task in (first, second):
            await backend.enqueue(task)
            (lease,) = await self.lease_all(backend, 1)
            assert task.id is not None
            failed = TaskOutcome(
                id=task.id, handler=task.handler, queue=task.queue, status=TaskStatus.FAILED, error_type="ValueError"
            )
            await backend.fail_with_outcome(lease, "boom", failed, 60.0)
            assert await backend.get_outcome(task.id) is not None
        assert (await admin.replay_dlq(1)).count == 1
        assert (await admin.replay_dlq_ids([str(second.id)])).count == 1
        assert first.id is not None
        assert second.id is not None
        assert await backend.get_outcome(first.id) is None
        assert await backend.get_outcome(second.id) is None

    # -- moves -------------------------------------------------------------------------------------------

    async def test_requeue_fences_the_old_lease(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """A requeued leased task cannot be settled by its old lease, and is delivered again."""
        (task_id,) = await self.put(backend, self.make_task())
        (old,) = await self.lease_all(backend, 1)
        moved = await admin.requeue([task_id])
        assert moved.count == 1
        with pytest.raises(LeaseLostError):
            await backend.ack(old)
        (new,) = await self.lease_all(backend, 1)
        assert new.lease_id == task_id
        assert new.token != old.token
        await backend.ack(new)

    async def test_requeue_to_another_queue(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """``queue=`` moves the task; it is then counted and leased there."""
        (task_id,) = await self.put(backend, self.make_task(queue="default"))
        await admin.requeue([task_id], queue="emails")
        assert (await admin.get(task_id)).queue == "emails"
        await admin.pause_queue("default")
        assert [lease.lease_id for lease in await backend.dequeue(5, _LEASE)] == [task_id]

    async def test_delete_removes_tasks_and_counts_only_real_ones(
        self, backend: DurableBackend, admin: DurableAdmin
    ) -> None:
        """Deleted tasks are never leased; ``delete_hash`` removes the record too."""
        kept, gone = await self.put(backend, self.make_task(), self.make_task())
        nowhere = str(uuid.uuid4())
        result = await admin.delete([kept, nowhere])
        assert result.count == 1
        assert nowhere in result.missing
        assert (await admin.delete([gone], delete_hash=True)).count == 1
        with pytest.raises(TaskNotFoundError):
            await admin.get(gone)
        assert await backend.dequeue(5, _LEASE) == []

    async def test_purge_ready_of_one_queue_and_the_dlq(self, backend: DurableBackend, admin: DurableAdmin) -> None:
        """A purge removes only the chosen sets of the chosen queues and says how many per queue."""
        await self.dead(backend, self.make_task(queue="default"))
        await self.put(backend, self.make_task(queue="emails"), self.make_task(queue="emails"))
        (other,) = await self.put(backend, self.make_task(queue="default"))
        result = await admin.purge(queues=["emails"], ready=True)
        assert result.ready.get("emails") == 2
        assert result.dead is None
        assert await admin.dlq_size() == 1
        result = await admin.purge(dlq=True)
        assert result.dead == 1
        assert await admin.dlq_size() == 0
        assert [lease.lease_id for lease in await backend.dequeue(5, _LEASE)] == [other]
