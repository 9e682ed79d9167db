"""``worker_core.admin``: the admin registry and ``open_admin``'s typed errors (the conformance suite runs in
each backend package against a real store)."""

from __future__ import annotations

from typing import Any

import pytest
from worker_core import ConfigurationError
from worker_core.admin import SOURCES, DurableAdmin, NodeInfo, open_admin, parse_weights
from worker_core.durable.types import lease_holder, lease_token
from worker_core.hookspecs import hookimpl
from worker_core.plugins import Plugins


class _Plugin:
    made: list[str]

    def __init__(self) -> None:
        self.made = []

    @hookimpl
    def worker_register_admins(self, registry: Any) -> None:
        registry.add("fake", self.make, owner="tests")

    def make(self, url: str) -> object:
        self.made.append(url)
        return object()


def test_open_admin_calls_the_factory_of_the_scheme_with_the_whole_url() -> None:
    plugins = Plugins(autoload=False)
    plugin = _Plugin()
    plugins.register(plugin, name="fake-admin")
    open_admin("FAKE://host/db?x=1", plugins=plugins)
    assert plugin.made == ["FAKE://host/db?x=1"]


def test_a_scheme_without_an_admin_names_the_installed_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown admin 'nosuch'; installed:"):
        open_admin("nosuch://x", plugins=Plugins(autoload=False))


def test_a_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no scheme"):
        open_admin("/var/tasks.db")


def test_the_protocol_names_every_operation_workerctl_needs() -> None:
    needed = {"overview", "dlq", "dlq_entry", "get", "replay_dlq", "replay_dlq_ids", "requeue", "delete", "purge"}
    assert needed <= set(dir(DurableAdmin))
    assert SOURCES == ("dlq", "ready", "processing")


class _Schedules:
    async def schedules(self) -> list[Any]:
        return []

    async def pause_schedule(self, name: str) -> None: ...

    async def resume_schedule(self, name: str) -> None: ...

    async def run_schedule_now(self, name: str) -> str:
        return name

    async def schedule_events(self, name: str, limit: int) -> list[Any]:
        return []


def test_optional_capabilities_are_checked_at_run_time() -> None:
    from worker_core.admin import ScheduleAdmin, TaskBrowser

    assert isinstance(_Schedules(), ScheduleAdmin)
    assert not isinstance(_Schedules(), TaskBrowser)
    assert not isinstance(object(), ScheduleAdmin)


def test_schedule_and_page_records_as_json() -> None:
    from worker_core.admin import BROWSE_STATES, ScheduleSummary, TaskPage

    info = ScheduleSummary("nightly", "report", "default", "0 3 * * *", 1_800_000_000_000, 0, paused=True)
    assert info.to_json() == {
        "name": "nightly",
        "handler": "report",
        "queue": "default",
        "spec": "0 3 * * *",
        "next_run": "2027-01-15T08:00:00Z",
        "last_run": "",
        "paused": True,
        "tz": "UTC",
        "last_outcome": "",
    }
    page = TaskPage((), "dead", 0, 50, 0, truncated=False, has_more=False)
    assert page.to_json()["tasks"] == []
    assert BROWSE_STATES == ("ready", "delayed", "processing", "dead")


def test_a_lease_token_names_its_node_and_foreign_tokens_name_none() -> None:
    token = lease_token("node-1")
    assert lease_holder(token) == "node-1"
    assert lease_holder(f"{token}:3") == "node-1"  # worker-redis appends the lease's number within its call
    assert lease_token("node-1") != token
    assert lease_holder("9f2c4e1a") == ""  # an older token, or one another implementation wrote
    assert lease_holder("") == ""


def test_node_weights_parse_from_a_heartbeat_and_old_heartbeats_have_none() -> None:
    assert parse_weights({"emails": 3, "bad": 0, "worse": True, "text": "2", "float": 1.5}) == {"emails": 3}
    assert parse_weights(None) == {}  # a heartbeat from before the key existed
    assert parse_weights(["emails", 3]) == {}
    node = NodeInfo("n", "h", 1, 0, (), 0, 0)
    assert node.weights == {}
    assert node.to_json()["weights"] == {}
