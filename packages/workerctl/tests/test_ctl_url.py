"""``--url``: every durable command reaches its store through the admin protocol of the URL's scheme."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from click.testing import CliRunner
from ctl_helpers import Ctl
from worker_core.durable import DurableTask

from workerctl import cli

NO_ENV: dict[str, str | None] = {"WORKER_REDIS_URL": None, "WORKER_REDIS_PREFIX": None, "WORKER_DURABLE_URL": None}


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env={**NO_ENV, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_url_with_a_redis_scheme_reads_the_same_store_as_redis_url(ctl: Ctl) -> None:
    task_id = ctl.put(queue="emails")
    code, out, err = run("durable", "stats", "--json", "--url", f"{ctl.url}?prefix={ctl.prefix}")
    assert code == 0, err
    queues = {q["name"]: q for q in json.loads(out)["queues"]}
    assert queues["emails"]["ready"] == 1
    code, out, err = run(
        "durable", "get", "--id", task_id, "--json", env={"WORKER_DURABLE_URL": f"{ctl.url}?prefix={ctl.prefix}"}
    )
    assert code == 0, err
    assert json.loads(out)["id"] == task_id


def test_a_scheme_no_installed_package_serves_is_one_clear_line() -> None:
    code, out, err = run("durable", "stats", "--url", "nosuch:///tasks.db")
    assert code == 1
    assert out == ""
    assert err.startswith("Error: unknown admin 'nosuch'; installed: ")
    assert "redis" in err
    assert err.count("\n") == 1


def test_url_and_a_redis_flag_together_are_a_usage_error(ctl: Ctl) -> None:
    code, _, err = run("durable", "stats", "--url", ctl.url, "--redis-url", ctl.url)
    assert code == 2
    assert "use only one of --url, --redis-url or --redis-addr" in err


def test_a_url_without_a_scheme_is_a_usage_error() -> None:
    code, _, err = run("durable", "stats", "--url", "tasks.db")
    assert code == 2
    assert "is not a URL (no scheme)" in err


def test_redis_only_commands_refuse_another_store() -> None:
    code, out, err = run("durable", "dump", "--url", "nosuch:///tasks.db")
    assert code == 1
    assert out == ""
    assert "works on Redis only, not on nosuch:// stores" in err


def test_every_durable_command_reads_and_repairs_a_sqlite_store(tmp_path: Path) -> None:
    """No Redis at all: stats, get, the DLQ and replay through worker-sqlite's admin."""
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    ok, dead = asyncio.run(_seed_sqlite(url))
    env: dict[str, str | None] = {"WORKER_DURABLE_URL": url}
    code, out, err = run("durable", "stats", "--json", env=env)
    assert code == 0, err
    data = json.loads(out)
    assert (data["total_ready"], data["dead"]) == (1, 1)
    code, out, err = run("durable", "get", "--id", ok, "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["status"] == "ready"
    code, out, err = run("durable", "dlq", "list", "--json", env=env)
    assert code == 0, err
    assert dead in out
    code, out, err = run("durable", "dlq", "replay", "--apply", env=env)
    assert code == 0, err
    code, out, err = run("durable", "stats", "--json", env=env)
    assert (json.loads(out)["total_ready"], json.loads(out)["dead"]) == (2, 0)
    code, _, err = run("durable", "dump", env=env)
    assert code == 1
    assert "works on Redis only, not on sqlite:// stores" in err


async def _seed_sqlite(url: str) -> tuple[str, str]:
    from worker_sqlite import SqliteDurableBackend

    backend = SqliteDurableBackend.from_url(url)
    try:
        ok = DurableTask("send", payload=b"{}", id=uuid.uuid4(), queue="default", retries=0)
        bad = DurableTask("send", payload=b"{}", id=uuid.uuid4(), queue="default", retries=0)
        await backend.enqueue(bad)
        (lease,) = await backend.dequeue(1, 30)
        await backend.fail(lease, "boom")
        await backend.enqueue(ok)
    finally:
        await backend.aclose()
    return str(ok.id), str(bad.id)
