"""A reusable pytest suite for :class:`~worker_core.admin.ScheduleAdmin` over a backend's shared schedule state.

A backend's tests subclass :class:`ScheduleAdminConformance` and provide two fixtures on one store: ``backend``
(the durable backend, a ``ScheduleBackend``: it plays the nodes) and ``admin`` (the backend's admin)::

    class TestSqliteScheduleAdmin(ScheduleAdminConformance):
        @pytest.fixture
        async def backend(self, make_backend):
            return await make_backend()

        @pytest.fixture
        async def admin(self, backend, db_path):  # after the backend: an admin does not create the file
            async with SqliteAdmin(str(db_path)) as admin:
                yield admin
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from worker_core.admin.browse import ScheduleAdmin
from worker_core.durable.types import DurableTask
from worker_core.errors import ConfigurationError
from worker_core.schedules.types import ScheduleBackend, ScheduleRecord, TickResult, tick_task_id

__all__ = ("ScheduleAdminConformance",)

_NIGHTLY = ScheduleRecord("nightly", "0 3 * * *", "Europe/Berlin", "reports")
_EVERY = ScheduleRecord("every-minute", "@every 1m", "UTC", "default", "once")


def _parts(admin: Any, backend: Any) -> tuple[ScheduleAdmin, ScheduleBackend]:
    assert isinstance(admin, ScheduleAdmin), f"{type(admin).__name__} is not a ScheduleAdmin"
    assert isinstance(backend, ScheduleBackend), f"{type(backend).__name__} is not a ScheduleBackend"
    return admin, backend


class ScheduleAdminConformance:
    """Contract tests of ``ScheduleAdmin`` over published schedules; subclass and add ``backend`` and ``admin``."""

    async def test_published_schedules_are_listed_with_their_next_run(self, admin: Any, backend: Any) -> None:
        """Published schedules are listed by name: spec, zone, queue, the next tick from the spec, no run yet."""
        schedules, store = _parts(admin, backend)
        assert await schedules.schedules() == []
        await store.publish_schedules([_NIGHTLY, _EVERY])
        before = int(time.time() * 1000)
        listed = await schedules.schedules()
        assert [(s.name, s.spec, s.tz, s.queue, s.paused) for s in listed] == [
            ("every-minute", "@every 1m", "UTC", "default", False),
            ("nightly", "0 3 * * *", "Europe/Berlin", "reports", False),
        ]
        every, nightly = listed
        assert before < every.next_run_ms <= before + 61_000
        assert every.next_run_ms % 60_000 == 0
        assert before < nightly.next_run_ms <= before + 86_400_000 + 3_600_000
        assert (every.last_run_ms, every.last_outcome) == (0, "")
        assert every.to_json()["next_run"].endswith("Z")

    async def test_pause_and_resume_reach_every_node(self, admin: Any, backend: Any) -> None:
        """Pause is the store's flag: listed, not planned, and the nodes' ticks are refused until resumed."""
        schedules, store = _parts(admin, backend)
        await store.publish_schedules([_EVERY])
        await schedules.pause_schedule("every-minute")
        (row,) = await schedules.schedules()
        assert row.paused
        assert row.next_run_ms == 0  # not planned while paused
        task = DurableTask("tick", None, b"{}", id=uuid.uuid4())
        assert await store.enqueue_tick(task, "every-minute", 60_000, 60.0) is TickResult.PAUSED
        await schedules.resume_schedule("every-minute")
        assert not (await schedules.schedules())[0].paused
        assert await store.enqueue_tick(task, "every-minute", 60_000, 60.0) is TickResult.ENQUEUED

    async def test_unknown_names_are_refused(self, admin: Any, backend: Any) -> None:
        """A name no node published is a ConfigurationError, and nothing is written for it."""
        schedules, store = _parts(admin, backend)
        await store.publish_schedules([_EVERY])
        for call in (schedules.pause_schedule, schedules.resume_schedule, schedules.run_schedule_now):
            with pytest.raises(ConfigurationError, match="no-such"):
                await call("no-such")
        assert not (await store.schedule_states(["no-such"]))["no-such"].paused
        assert await store.take_schedule_runs(["no-such"]) == []

    async def test_run_now_leaves_one_request_for_the_nodes(self, admin: Any, backend: Any) -> None:
        """Run now leaves one request that one node takes; the task id is not known yet (``""``)."""
        schedules, store = _parts(admin, backend)
        await store.publish_schedules([_NIGHTLY])
        assert await schedules.run_schedule_now("nightly") == ""
        assert await store.take_schedule_runs(["nightly"]) == ["nightly"]
        assert await store.take_schedule_runs(["nightly"]) == []

    async def test_the_last_run_and_events_come_from_the_store(self, admin: Any, backend: Any) -> None:
        """The last run and outcome come from the tick the nodes stored; events list it."""
        schedules, store = _parts(admin, backend)
        await store.publish_schedules([_EVERY])
        tick = (int(time.time() * 1000) // 60_000) * 60_000
        task = DurableTask("tick", None, b"{}", id=tick_task_id("every-minute", tick))
        assert await store.enqueue_tick(task, "every-minute", tick, 60.0, node="node-a") is TickResult.ENQUEUED
        (row,) = await schedules.schedules()
        assert row.last_run_ms >= tick
        assert row.last_outcome == "enqueued"
        (event,) = await schedules.schedule_events("every-minute", 10)
        assert (event.kind, event.tick_ms, event.node, event.task_id) == ("enqueued", tick, "node-a", str(task.id))
        assert await schedules.schedule_events("never-published", 10) == []
