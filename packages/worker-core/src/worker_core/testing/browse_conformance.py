"""Contract tests for a :class:`~worker_core.admin.TaskBrowser`, run against a real store.

Like :class:`~worker_core.testing.DurableAdminConformance`: a backend's tests subclass
:class:`TaskBrowserConformance` and provide ``backend`` and ``admin`` fixtures over the same, empty store; the tests
write through the backend as a worker would and check what ``browse_tasks`` and ``task_payload`` read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker_core.admin import BROWSE_PAGE_LIMIT, TaskBrowser
from worker_core.durable.types import DurableBackend, DurableTask, FailureReason, lease_holder
from worker_core.errors import ConfigurationError, TaskNotFoundError

__all__ = ("TaskBrowserConformance",)

_LEASE = 30.0


class TaskBrowserConformance:
    """What every :class:`TaskBrowser` must get right: states, newest first, paging, filters, bad arguments."""

    @staticmethod
    def browse_task(handler: str = "send", queue: str = "default", **fields: Any) -> DurableTask:
        """A task as the manager hands it to a backend."""
        fields.setdefault("id", uuid.uuid4())
        fields.setdefault("retries", 0)
        fields.setdefault("retry_delay", 1.0)
        payload = fields.pop("payload", b'{"n": 1}')
        return DurableTask(handler, None, payload, queue=queue, **fields)

    async def test_implements_the_protocol(self, admin: Any) -> None:
        """The admin satisfies :class:`TaskBrowser`."""
        assert isinstance(admin, TaskBrowser)

    async def test_delayed_tasks_newest_first_with_paging_and_filters(
        self, backend: DurableBackend, admin: TaskBrowser
    ) -> None:
        """Pages follow ready-at time, newest first, across queues; ``queue`` and ``handler`` narrow them."""
        soon = datetime.now(UTC) + timedelta(minutes=10)
        ids = []
        for i in range(5):
            task = self.browse_task(
                handler="even" if i % 2 == 0 else "odd",
                queue="default" if i < 3 else "emails",
                run_at=soon + timedelta(seconds=i),
            )
            await backend.enqueue(task)
            ids.append(str(task.id))
        newest = list(reversed(ids))
        first = await admin.browse_tasks("delayed", limit=2)
        rest = await admin.browse_tasks("delayed", limit=10, offset=2)
        assert [t.id for t in first.tasks] == newest[:2]
        assert first.has_more
        assert [t.id for t in rest.tasks] == newest[2:]
        assert not rest.has_more
        assert (await admin.browse_tasks("ready")).tasks == ()
        narrowed = await admin.browse_tasks("delayed", queue="default", handler="even")
        assert [t.id for t in narrowed.tasks] == [ids[2], ids[0]]
        later = int((soon + timedelta(seconds=3)).timestamp() * 1000)
        assert [t.id for t in (await admin.browse_tasks("delayed", since_ms=later)).tasks] == newest[:2]

    async def test_ready_processing_and_dead(self, backend: DurableBackend, admin: TaskBrowser) -> None:
        """A due task is ready, a leased one processing, a failed one dead with its error."""
        tasks = [self.browse_task() for _ in range(3)]
        for task in tasks:
            await backend.enqueue(task)
        leases = await backend.dequeue(2, _LEASE)
        assert len(leases) == 2
        await backend.fail(leases[0], FailureReason("boom", "ValueError", "Traceback ..."))
        ready = {t.id for t in (await admin.browse_tasks("ready")).tasks}
        processing = [t.id for t in (await admin.browse_tasks("processing")).tasks]
        dead = (await admin.browse_tasks("dead")).tasks
        assert processing == [leases[1].lease_id]
        (held,) = (await admin.browse_tasks("processing")).tasks
        assert held.leased_by == lease_holder(leases[1].token) != ""  # the backend's node id
        assert {t.leased_by for t in (await admin.browse_tasks("ready")).tasks} == {""}
        assert [t.id for t in dead] == [leases[0].lease_id]
        assert "boom" in dead[0].last_error
        assert ready == {str(t.id) for t in tasks} - {leases[0].lease_id, leases[1].lease_id}

    async def test_payload_and_bad_arguments(self, backend: DurableBackend, admin: TaskBrowser) -> None:
        """A task's payload bytes; unknown ids are TaskNotFoundError, bad arguments ConfigurationError."""
        task = self.browse_task(payload=b'{"password": "x"}')
        await backend.enqueue(task)
        assert await admin.task_payload(str(task.id)) == b'{"password": "x"}'
        with pytest.raises(TaskNotFoundError):
            await admin.task_payload(str(uuid.uuid4()))
        with pytest.raises(ConfigurationError):
            await admin.browse_tasks("finished")
        with pytest.raises(ConfigurationError):
            await admin.browse_tasks("ready", limit=BROWSE_PAGE_LIMIT + 1)
        with pytest.raises(ConfigurationError):
            await admin.browse_tasks("ready", offset=-1)
