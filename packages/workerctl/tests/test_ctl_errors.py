"""Bad input: one clear line on stderr and exit 1 (runtime) or click's usage message and exit 2; Redis unchanged.

A few run the real console script in a subprocess (exit codes, no traceback); the rest use CliRunner.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import click
import pytest
import redis
from click.testing import CliRunner
from ctl_helpers import Ctl
from worker_redis.testing import free_port, redis_server

from workerctl import cli

WORKERCTL = [sys.executable, "-m", "workerctl"]
NO_ENV: dict[str, str | None] = {"WORKER_REDIS_URL": None, "WORKER_REDIS_PASSWORD": None, "WORKER_REDIS_PREFIX": None}


def run_real(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_REDIS")}
    environment.update(env or {})
    return subprocess.run([*WORKERCTL, *args], capture_output=True, text=True, env=environment, timeout=60, check=False)


def test_unreachable_redis_is_one_line_exit_1() -> None:
    port = free_port()
    proc = run_real("durable", "stats", "--redis-addr", f"127.0.0.1:{port}", "--timeout", "1s")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: redis at 127.0.0.1:{port} is unreachable")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_wrong_password_is_one_line_and_never_printed() -> None:
    with redis_server(password="right-secret") as srv:
        url = f"redis://:wrong-secret@127.0.0.1:{srv.port}/0"
        proc = run_real("durable", "pause", "--apply", env={"WORKER_REDIS_URL": url})
        assert proc.returncode == 1
        assert "authentication failed" in proc.stderr
        assert proc.stderr.count("\n") == 1
        assert "wrong-secret" not in proc.stderr + proc.stdout
        addr = ["--redis-addr", f"127.0.0.1:{srv.port}"]
        result = CliRunner().invoke(cli, ["durable", "paused", *addr, "--redis-password", "nope"], env=NO_ENV)
        assert result.exit_code == 1
        assert "nope" not in result.output.replace("authentication", "")
        env = {**NO_ENV, "WORKER_REDIS_PASSWORD": "right-secret"}
        ok = CliRunner().invoke(cli, ["durable", "paused", *addr], env=env)
        assert (ok.exit_code, ok.stdout) == (0, "paused=false\n")
        check = redis.Redis.from_url(srv.url)
        try:
            assert check.get("{go-worker}:paused") is None  # nothing changed
        finally:
            check.close()


def test_usage_errors_exit_2_with_clicks_message() -> None:
    proc = run_real("durable", "retry", "--source", "bogus")
    assert proc.returncode == 2
    assert "Usage: workerctl durable retry" in proc.stderr
    assert "Invalid value for '--source'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_id_is_exit_1_and_changes_nothing(ctl: Ctl) -> None:
    ctl.put(state="dead")
    before = ctl.state()
    for args in (
        ["get", "--id", "missing-id"],
        ["retry", "--id", "missing-id", "--apply"],
        ["delete", "--id", "missing-id", "--apply"],
        ["dlq", "replay", "--id", "missing-id", "--apply", "--no-show-counts"],
        ["dlq", "show", "--id", "missing-id"],
    ):
        result = ctl.run("durable", *args)
        assert result.exit_code == 1, args
        assert result.stderr == "Error: task missing-id not found\n", args
        assert result.stdout == ""
    assert ctl.state() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{bad"], "Error: payload is not valid JSON"),
        (["--payload", "a: [1", "--payload-format", "yaml"], "Error: payload is not valid YAML"),
        (["--payload-b64", "not base64!"], "Error: payload is not valid base64"),
        (["--payload-b64", "   "], "Error: base64 payload is empty"),
    ],
)
def test_malformed_payloads_are_exit_1(ctl: Ctl, args: list[str], message: str) -> None:
    before = ctl.state()
    result = ctl.run("durable", "enqueue", "--handler", "h", "--apply", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert ctl.state() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--payload", "{}", "--run-at", "2030-01-01T00:00:00Z", "--delay", "5s"],
            "use only one of --run-at or --delay",
        ),
        ([], "use exactly one of --payload"),
        (["--payload", "{}", "--payload-b64", "e30="], "use exactly one of --payload"),
        (["--payload-b64", "e30=", "--payload-format", "json"], "payload format is not applicable"),
        (["--payload", "{}", "--meta", "novalue"], "metadata must be key=value"),
        (["--payload", "{}", "--id", "not-a-uuid"], "must be a UUID"),
        (["--payload", "{}", "--run-at", "tomorrow"], "must be RFC3339"),
    ],
)
def test_enqueue_flag_misuse_is_a_usage_error(ctl: Ctl, args: list[str], message: str) -> None:
    before = ctl.state()
    result = ctl.run("durable", "enqueue", "--handler", "h", "--apply", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Usage:" in result.stderr
    assert ctl.state() == before


def test_other_usage_errors(ctl: Ctl) -> None:
    for args, message in (
        (["purge", "--apply"], "at least one of --ready, --processing, or --dlq is required"),
        (["delete", "--apply"], "source is required when --id is not set"),
        (["retry", "--source", "ready", "--apply"], "--from-queue is required for source ready/processing"),
        (["requeue", "--apply"], "Missing option '--queue'"),
        (["get"], "Missing option '--id'"),
        (["stats", "--watch", "soon"], "invalid duration"),
        (["stats", "--redis-url", "http://x"], "must start with redis:// or rediss://"),
        (["stats", "--redis-prefix", "{app"], "unbalanced braces"),
        (["stats", "--redis-addr", "host:port"], "is not host:port"),
    ):
        result = ctl.run("durable", *args)
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)


def test_base64_payload_decoding_accepts_wrapped_text(ctl: Ctl) -> None:
    raw = bytes(range(200))
    wrapped = "\n".join(base64.b64encode(raw).decode()[i : i + 60] for i in range(0, 268, 60))
    result = ctl.run("durable", "enqueue", "--handler", "h", "--payload-b64-file", "-", input=wrapped)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dry-run: use --apply to enqueue task ")


def test_every_command_has_help_with_an_example() -> None:
    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, [*path, name])
        return out

    paths = walk(cli, [])
    assert len(paths) >= 24
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"], prog_name="workerctl")
        assert result.exit_code == 0, path
        assert re.search(r"Example:\n(?: +.*\n)*? +workerctl ", result.output), path
        assert result.output.startswith(f"Usage: {' '.join(['workerctl', *path])} "), path


def test_version_and_completion() -> None:
    runner = CliRunner()
    version = runner.invoke(cli, ["version"]).output
    assert version.startswith(("0.", "dev"))
    assert "python=" in version
    assert runner.invoke(cli, ["--version"]).output == version
    for shell, marker in (("bash", "complete -o"), ("zsh", "compdef"), ("fish", "complete --no-files")):
        result = runner.invoke(cli, ["completion", shell])
        assert result.exit_code == 0
        assert marker in result.output
        assert "_WORKERCTL_COMPLETE" in result.output
    assert runner.invoke(cli, ["completion", "powershell"]).exit_code == 2


def test_snapshot_export_import_round_trips_binary_payloads(ctl: Ctl, tmp_path: object) -> None:
    binary = b"\x08\x96\x01\x12\x07testing\xff\xfe"
    r = ctl.put(payload=binary, queue="pb")
    d = ctl.put(state="dead", queue="pb")
    p = ctl.put(state="processing", queue="pb")
    exported = ctl.ok("durable", "snapshot", "export", "--processing", "--dlq", "--limit", "0")
    lines = [json.loads(x) for x in exported.splitlines()]
    assert [x["id"] for x in lines] == [r, p, d]
    assert base64.b64decode(lines[0]["fields_b64"]["payload"]) == binary
    with redis_server() as other:
        target = Ctl(url=other.url, prefix=ctl.prefix, r=redis.Redis.from_url(other.url))
        try:
            assert target.ok("durable", "snapshot", "import", "--apply", input=exported) == (
                "imported 3 snapshot item(s)\n"
            )
            assert target.r.hget(target.keys.task(r), "payload") == binary
            assert target.ready_ids("pb") == [r]
            assert target.dead_ids() == [d]
            assert target.r.zscore(target.keys.processing("pb"), p) is not None
            again = target.ok("durable", "snapshot", "export", "--processing", "--dlq", "--limit", "0")
            strip = [
                {k: v for k, v in json.loads(x)["fields"].items() if k != "lease_token"} for x in again.splitlines()
            ]
            assert strip == [{k: v for k, v in x["fields"].items() if k != "lease_token"} for x in lines]
        finally:
            target.r.close()


def test_unexpected_errors_are_one_line_without_traceback(tmp_path: object) -> None:
    proc = run_real("durable", "snapshot", "import", "--in", "/nonexistent/file.jsonl")
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot read /nonexistent/file.jsonl")
    assert "Traceback" not in proc.stderr
