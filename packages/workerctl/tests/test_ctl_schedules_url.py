"""``workerctl durable schedules ... --url sqlite:///...``: the schedule commands through the store's admin.

A real node (a TaskManager on worker-sqlite) publishes its schedule and takes the triggered run; no Redis at all.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_sqlite import SqliteDurableBackend

from workerctl import cli

NO_ENV: dict[str, str | None] = {"WORKER_REDIS_URL": None, "WORKER_REDIS_PREFIX": None, "WORKER_DURABLE_URL": None}


def ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=NO_ENV)
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def _run_node(path: Path, until_triggered: bool = False) -> None:
    """A node with a daily schedule: it publishes it at its first poll; optionally until a triggered run ran."""
    ran = asyncio.Event()

    def handler(ctx: TaskContext, payload: Any) -> None:
        ran.set()

    backend = SqliteDurableBackend(path)
    tm = TaskManager(
        durable_backend=backend,
        durable_handlers={"report": DurableHandlerSpec(None, handler)},
        durable_codec="json",
        durable_poll_interval=0.05,
    )
    tm.register_durable_cron_task("nightly", "0 2 * * *", lambda: DurableTask("report", {}), tz="Europe/Berlin")
    async with tm:
        async with asyncio.timeout(10):
            while not await backend.list_schedules():  # noqa: ASYNC110 - a row, no event to wait on
                await asyncio.sleep(0.02)
            if until_triggered:
                await ran.wait()
    await backend.aclose()


def test_list_pause_trigger_events_resume_on_a_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    url = f"sqlite:///{path}"
    missing = CliRunner().invoke(cli, ["durable", "schedules", "list", "--url", url])
    assert missing.exit_code == 1
    assert "no such database file" in missing.stderr
    assert not path.exists()  # inspecting a mistyped path creates nothing

    async def create() -> None:
        async with SqliteDurableBackend(path):
            pass

    asyncio.run(create())
    assert "no durable schedules" in ok("durable", "schedules", "list", "--url", url)
    asyncio.run(_run_node(path))
    listed = ok("durable", "schedules", "list", "--url", url)
    assert "nightly" in listed
    assert "Europe/Berlin" in listed
    (row,) = json.loads(ok("durable", "schedules", "list", "--json", "--url", url))["schedules"]
    assert (row["name"], row["spec"], row["paused"]) == ("nightly", "0 2 * * *", False)
    assert row["next_run_ms"] > 0

    assert ok("durable", "schedules", "pause", "--name", "nightly", "--apply", "--url", url).endswith("paused\n")
    assert json.loads(ok("durable", "schedules", "list", "--json", "--url", url))["schedules"][0]["paused"] is True
    result = CliRunner().invoke(cli, ["durable", "schedules", "pause", "--name", "nope", "--apply", "--url", url])
    assert result.exit_code == 1
    assert "no schedule named 'nope'" in result.stderr

    assert "requested" in ok("durable", "schedules", "trigger", "--name", "nightly", "--apply", "--url", url)
    asyncio.run(_run_node(path, until_triggered=True))  # a paused schedule still runs when asked to
    events = json.loads(ok("durable", "schedules", "events", "--name", "nightly", "--json", "--url", url))["events"]
    assert [e["kind"] for e in events] == ["triggered"]
    assert ok("durable", "schedules", "resume", "--name", "nightly", "--apply", "--url", url).endswith("resumed\n")
    assert json.loads(ok("durable", "schedules", "list", "--json", "--url", url))["schedules"][0]["paused"] is False
