"""``ScheduleStoreAdmin`` over the in-memory backend: the ScheduleAdmin contract, and what it refuses."""

from __future__ import annotations

import pytest
from worker_core.admin import ScheduleAdmin, ScheduleStoreAdmin
from worker_core.errors import ConfigurationError
from worker_core.schedules import ScheduleRecord
from worker_core.testing import InMemoryDurableBackend, ScheduleAdminConformance


class TestInMemoryScheduleAdmin(ScheduleAdminConformance):
    @pytest.fixture
    def backend(self) -> InMemoryDurableBackend:
        return InMemoryDurableBackend()

    @pytest.fixture
    def admin(self, backend: InMemoryDurableBackend) -> ScheduleStoreAdmin:
        return ScheduleStoreAdmin(backend)


def test_a_store_without_schedules_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no ScheduleBackend"):
        ScheduleStoreAdmin(object())


async def test_it_is_a_schedule_admin_and_shows_a_spec_it_cannot_read() -> None:
    backend = InMemoryDurableBackend()
    admin = ScheduleStoreAdmin(backend, clock=lambda: 1_800_000_000.0)
    assert isinstance(admin, ScheduleAdmin)
    await backend.publish_schedules([ScheduleRecord("future", "@fortnightly", "UTC", "default")])
    (row,) = await admin.schedules()
    assert (row.name, row.spec, row.next_run_ms) == ("future", "@fortnightly", 0)  # listed, not planned
