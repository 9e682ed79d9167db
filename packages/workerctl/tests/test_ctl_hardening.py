"""One Redis target for every command (``?prefix=`` included), and `workerctl worker`'s node settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from click.testing import CliRunner
from ctl_helpers import Ctl
from test_ctl_worker import HERE, eventually, line_with, run_worker
from worker_core.durable.types import DurableTask
from worker_redis import RedisDurableBackend

from workerctl import cli


def test_durable_commands_honour_the_prefix_in_the_url(ctl: Ctl) -> None:
    url = f"{ctl.url}?prefix={ctl.prefix}"
    env = {"WORKER_REDIS_URL": url, "WORKER_REDIS_PREFIX": None}
    tid = str(uuid.uuid4())
    enqueue = ["durable", "enqueue", "--id", tid, "--handler", "h", "--payload", "{}", "--apply"]
    result = CliRunner().invoke(cli, enqueue, env=env)
    assert result.exit_code == 0, result.output
    assert ctl.r.exists(ctl.keys.task(tid)) == 1  # written under the URL's prefix, as the worker reads it
    stats = CliRunner().invoke(cli, ["durable", "stats", "--json"], env=env)
    assert json.loads(stats.stdout)["total_ready"] == 1
    got = CliRunner().invoke(cli, ["durable", "get", "--id", tid, "--json"], env=env)
    assert json.loads(got.stdout)["status"] == "ready"
    other = CliRunner().invoke(cli, ["durable", "stats", "--json"], env={"WORKER_REDIS_URL": ctl.url})
    assert json.loads(other.stdout)["total_ready"] == 0  # the default prefix is another deployment


def test_an_app_without_a_durable_backend_or_handlers_is_refused(ctl: Ctl) -> None:
    proc = run_worker("worker_app:in_memory_only")
    assert proc.returncode == 1
    assert "has no durable backend" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_worker("worker_app:without_handlers", "--redis-url", ctl.url)
    assert proc.returncode == 1
    assert "durable_handlers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_flags_reach_the_app_and_consume_only_the_named_queues(ctl: Ctl, tmp_path: Path) -> None:
    ctl.ok("durable", "enqueue", "--handler", "record", "--queue", "emails", "--payload", '{"name": "e"}', "--apply")
    ctl.ok("durable", "enqueue", "--handler", "record", "--payload", '{"name": "d"}', "--apply")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(tmp_path))
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:configured", "--rate", "0",
           "--lease", "5s", "--renewal", "1s", "--consume", "emails", "-c", "3"]  # fmt: skip
    with subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        started = line_with(proc.stderr, "worker started")
        assert "consume=emails" in started
        eventually(lambda: (tmp_path / "done-e").exists())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    options = json.loads((tmp_path / "options.json").read_text())
    assert options == {
        "tasks_per_second": None,
        "durable_lease": 5.0,
        "durable_lease_renewal_interval": 1.0,
        "max_workers": 3,
        "consume": ["emails"],
    }
    assert not (tmp_path / "started-d").exists()  # the default queue is another node's
    assert json.loads(ctl.ok("durable", "stats", "--json"))["total_ready"] == 1


def test_without_rate_a_factory_gets_no_rate_limit(ctl: Ctl, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(tmp_path))
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:configured"]
    with subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        line_with(proc.stderr, "worker started")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    options = json.loads((tmp_path / "options.json").read_text())
    assert options["tasks_per_second"] is None
    assert "durable_lease" not in options


def test_durable_workers_lists_the_live_nodes(ctl: Ctl) -> None:
    async def scenario() -> tuple[list[dict[str, object]], str, list[dict[str, object]], dict[str, object]]:
        backend = RedisDurableBackend.from_url(
            ctl.url, prefix=ctl.prefix, queues=["emails"], queue_weights={"emails": 3}
        )
        try:
            backend.register_node({"host": "node-a", "pid": 42, "started": 1_767_225_600.5}, lambda: 3)
            await backend.extend_many([], 30.0)  # the heartbeat rides on the renewal call
            task = DurableTask("send", None, b"{}", queue="emails", id=uuid.uuid4())
            await backend.enqueue(task)
            assert len(await backend.dequeue(1, 30.0)) == 1
            env = {"WORKER_REDIS_URL": ctl.url, "WORKER_REDIS_PREFIX": ctl.prefix}
            listed = await asyncio.to_thread(CliRunner().invoke, cli, ["durable", "workers", "--json"], env=env)
            table = await asyncio.to_thread(CliRunner().invoke, cli, ["durable", "workers"], env=env)
            get = ["durable", "get", "--id", str(task.id), "--json"]
            got = await asyncio.to_thread(CliRunner().invoke, cli, get, env=env)
            await backend.unregister_node()
            after = await asyncio.to_thread(CliRunner().invoke, cli, ["durable", "workers", "--json"], env=env)
            return json.loads(listed.stdout), table.stdout, json.loads(after.stdout), json.loads(got.stdout)
        finally:
            await backend.aclose()

    listed, table, after, record = asyncio.run(scenario())
    [node] = listed
    assert node["host"] == "node-a"
    assert node["pid"] == 42
    assert node["queues"] == ["emails"]
    assert node["running"] == 3
    assert node["started"] == "2026-01-01T00:00:00Z"  # rfc3339 of the epoch seconds it gave
    assert node["weights"] == {"emails": 3}
    assert table.splitlines()[0].split() == ["ID", "HOST", "PID", "STARTED", "QUEUES", "WEIGHTS", "RUNNING", "SEEN"]
    assert table.splitlines()[1].split()[1:6] == ["node-a", "42", "2026-01-01T00:00:00Z", "emails", "emails=3"]
    assert (record["status"], record["leased_by"]) == ("processing", node["id"])  # get --json names the node
    assert after == []
