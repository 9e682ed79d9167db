"""``workerctl durable schedules``: against the state real nodes (TaskManagers on Redis) publish and read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ctl_helpers import Ctl
from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_redis import RedisDurableBackend


async def _run_node(ctl: Ctl, until_triggered: bool = False) -> list[Any]:
    """Start a node with a yearly schedule (it publishes it), optionally until a triggered run has run."""
    ran = asyncio.Event()

    def handler(ctx: TaskContext, payload: Any) -> None:
        ran.set()

    backend = RedisDurableBackend.from_url(ctl.url, prefix=ctl.prefix)
    tm = TaskManager(
        durable_backend=backend,
        durable_handlers={"report": DurableHandlerSpec(None, handler)},
        durable_codec="json",
        durable_poll_interval=0.05,
    )
    tm.register_durable_cron_task(
        "nightly-report", "0 2 * * *", lambda: DurableTask("report", {"day": 1}), tz="Europe/Berlin"
    )
    async with tm:
        async with asyncio.timeout(10):
            while not ctl.r.hexists(ctl.keys.schedules, "nightly-report"):  # noqa: ASYNC110 - a key, no event
                await asyncio.sleep(0.02)  # the node publishes its schedules on its first poll
            if until_triggered:
                await ran.wait()
        infos = await tm.schedules()
    await backend.aclose()
    return infos


def test_list_pause_trigger_resume_against_a_node(ctl: Ctl) -> None:
    assert "no durable schedules" in ctl.ok("durable", "schedules", "list")
    asyncio.run(_run_node(ctl))
    listed = ctl.ok("durable", "schedules", "list")
    assert "nightly-report" in listed
    assert "0 2 * * *" in listed
    assert "Europe/Berlin" in listed
    doc = json.loads(ctl.ok("durable", "schedules", "list", "--json"))
    (row,) = doc["schedules"]
    assert row["paused"] is False
    assert row["next_run_ms"] > 0

    assert "dry-run" in ctl.ok("durable", "schedules", "pause", "--name", "nightly-report")
    assert not ctl.r.sismember(ctl.keys.schedule_paused, "nightly-report")
    assert ctl.ok("durable", "schedules", "pause", "--name", "nightly-report", "--apply").endswith("paused\n")
    assert json.loads(ctl.ok("durable", "schedules", "list", "--json"))["schedules"][0]["paused"] is True

    assert "dry-run" in ctl.ok("durable", "schedules", "trigger", "--name", "nightly-report")
    assert not ctl.r.hexists(ctl.keys.schedule_runs, "nightly-report")
    ctl.ok("durable", "schedules", "trigger", "--name", "nightly-report", "--apply")
    infos = asyncio.run(_run_node(ctl, until_triggered=True))  # a paused schedule still runs when asked to
    assert infos[0].paused is True
    assert not ctl.r.hexists(ctl.keys.schedule_runs, "nightly-report")  # taken
    events = json.loads(ctl.ok("durable", "schedules", "events", "--name", "nightly-report", "--json"))["events"]
    assert [e["kind"] for e in events] == ["triggered"]
    assert "triggered" in ctl.ok("durable", "schedules", "events", "--name", "nightly-report")

    assert ctl.ok("durable", "schedules", "resume", "--name", "nightly-report", "--apply").endswith("resumed\n")
    assert not ctl.r.sismember(ctl.keys.schedule_paused, "nightly-report")
    assert "no events" in ctl.ok("durable", "schedules", "events", "--name", "other")


def test_corrupt_records_are_skipped_in_listings(ctl: Ctl) -> None:
    ctl.r.hset(ctl.keys.schedules, "broken", b"{nope")
    ctl.r.lpush(ctl.keys.schedule_events("broken"), b"[]")
    assert "no durable schedules" in ctl.ok("durable", "schedules", "list")
    assert "no events" in ctl.ok("durable", "schedules", "events", "--name", "broken")
