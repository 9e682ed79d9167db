"""`workerctl worker APP` as a real subprocess: loading errors, and a node that consumes durable tasks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import grpc
import redis
import trustme
from click.testing import CliRunner
from ctl_helpers import Ctl
from grpc_health.v1 import health_pb2, health_pb2_grpc
from worker_redis.testing import redis_server

from workerctl import cli

HERE = Path(__file__).parent


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_REDIS")}
    return subprocess.run(
        [sys.executable, "-m", "workerctl", "worker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE,
        timeout=timeout,
        check=False,
    )


def test_an_app_that_cannot_be_imported_is_a_clear_exit_1() -> None:
    proc = run_worker("no_such_module:app")  # the real console script: exit code, stderr, no traceback
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: cannot import 'no_such_module' for no_such_module:app: ModuleNotFoundError: "
        "No module named 'no_such_module'"
    )
    for app, message in (
        ("os:no_such_attribute", "Error: module 'os' has no attribute 'no_such_attribute'\n"),
        ("os:getcwd", "Error: os:getcwd returned str, not a TaskManager\n"),
        ("worker_app_broken:create_manager", "Error: cannot import 'worker_app_broken' for "
         "worker_app_broken:create_manager: ZeroDivisionError: broken on import\n"),
    ):  # fmt: skip
        result = CliRunner().invoke(cli, ["worker", app], env={"WORKER_REDIS_URL": None})
        assert (result.exit_code, result.stderr) == (1, message)


def test_bad_app_spelling_and_options_are_usage_errors() -> None:
    for args, message in (
        (["no-colon"], "is not module:attribute"),
        (["os:getcwd", "--queue", "emails=zero"], "weight must be an integer >= 1"),
        (["os:getcwd", "--redis-url", "http://localhost"], "must start with redis:// or rediss://"),
        (["os:getcwd", "-c", "0"], "0 is not in the range x>=1"),
    ):
        result = CliRunner().invoke(cli, ["worker", *args], env={"WORKER_REDIS_URL": None})
        assert result.exit_code == 2, args
        assert message in result.stderr, (args, result.stderr)


def test_worker_runs_imported_tasks_serves_grpc_and_finishes_its_task_on_sigterm(ctl: Ctl, tmp_path: Path) -> None:
    # Tasks enqueued on one Redis, exported, imported into another: the worker runs them there.
    for name in ("a", "b", "c"):
        ctl.ok("durable", "enqueue", "--handler", "record", "--payload", json.dumps({"name": name}), "--apply")
    ctl.ok("durable", "enqueue", "--handler", "record", "--queue", "slow",
           "--payload", json.dumps({"name": "slow", "slow": True}), "--apply")  # fmt: skip
    snapshot = tmp_path / "snapshot.jsonl"
    ctl.run("durable", "snapshot", "export", "--limit", "0", "--out", str(snapshot))
    assert len(snapshot.read_text().splitlines()) == 4
    out = tmp_path / "out"
    out.mkdir()
    with redis_server() as other:
        target = Ctl(url=other.url, prefix=ctl.prefix, r=redis.Redis.from_url(other.url))
        try:
            assert target.ok("durable", "snapshot", "import", "--in", str(snapshot), "--apply").startswith("imported 4")
            env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
            env.update(WORKER_REDIS_URL=other.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(out))
            cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:create_manager", "-c", "2",
                   "--queue", "default=2", "--queue", "slow", "--grpc-listen", "127.0.0.1:0"]  # fmt: skip
            proc = subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True)
            try:
                assert proc.stderr is not None
                started = line_with(proc.stderr, "worker started")
                assert "worker started: app=worker_app:create_manager" in started, started
                assert "concurrency=2" in started
                assert other.url.split("@")[-1].split("/")[2] in started  # host:port, never a password
                port = int(started.split("grpc=127.0.0.1:")[1].split()[0])
                assert grpc_health(port) == health_pb2.HealthCheckResponse.SERVING
                eventually(lambda: all((out / f"done-{n}").exists() for n in "abc"))
                eventually(lambda: (out / "started-slow").exists())
                proc.send_signal(signal.SIGTERM)
                line_with(proc.stderr, "stopping gracefully")
                assert proc.poll() is None  # still running: the slow task has not finished
                assert not (out / "done-slow").exists()
                (out / "release").touch()
                assert proc.wait(timeout=30) == 0
                rest = proc.stderr.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if proc.stderr is not None:
                    proc.stderr.close()
            assert (out / "done-slow").exists()
            assert "Traceback" not in rest
            assert target.ok("durable", "stats", "--json").count('"processing":0') == 2
            assert json.loads(target.ok("durable", "stats", "--json"))["total_ready"] == 0
            # Every task acked and deleted; what is left are the calls' request records, which expire by themselves,
            # and the result store: one outcome per task (kept for the manager's durable_result_ttl) and the
            # per-queue lists of recent outcomes.
            state = set(target.state())
            results = {key for key in state if b":result:" in key}
            assert len(results) == 4
            assert {key for key in state if b":recent:" in key} == {
                target.keys.prefix.encode() + b":recent:default",
                target.keys.prefix.encode() + b":recent:slow",
            }
            kept = (b":ack:", b":dequeue:", b":result:", b":recent:")
            left = {key for key in state if not any(part in key for part in kept)}
            assert left <= {target.keys.queues.encode()}
        finally:
            target.r.close()


def grpc_health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs do not type the RPC methods
        reply = stub.Check(health_pb2.HealthCheckRequest(service="worker.v1.WorkerService"), timeout=10)
        return int(reply.status)


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_second_signal_stops_the_worker_now_and_loses_no_task(ctl: Ctl, tmp_path: Path) -> None:
    tid = str(uuid.uuid4())
    ctl.ok("durable", "enqueue", "--id", tid, "--handler", "record",
           "--payload", json.dumps({"name": "stuck", "slow": True}), "--apply")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(tmp_path))
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:create_manager"]
    with subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        line_with(proc.stderr, "worker started")
        eventually(lambda: (tmp_path / "started-stuck").exists())
        proc.send_signal(signal.SIGINT)
        line_with(proc.stderr, "stopping gracefully")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        rest = proc.stderr.read()
    assert "stopping now" in rest
    assert "Traceback" not in rest
    assert not (tmp_path / "done-stuck").exists()
    assert ctl.json("durable", "get", "--id", tid)["status"] in ("ready", "processing")  # redelivered later


def test_worker_serves_grpc_over_tls(ctl: Ctl, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(tmp_path))
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:create_manager", "--grpc-listen", "127.0.0.1:0",
           "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")]  # fmt: skip
    with subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        started = line_with(proc.stderr, "worker started")
        assert "(TLS, no auth)" in started, started
        port = int(started.split("grpc=127.0.0.1:")[1].split()[0])
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def line_with(stream: IO[str], text: str) -> str:
    """The first line of ``stream`` containing ``text`` (other log lines may come first)."""
    for line in stream:
        if text in line:
            return line
    raise AssertionError(f"the worker's stderr ended without {text!r}")
