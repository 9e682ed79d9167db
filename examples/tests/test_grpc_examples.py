"""Run the gRPC examples as programs: a real server process, a real client process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_redis.testing import REDIS_SERVER, redis_server

EXAMPLES = Path(__file__).resolve().parent.parent
# Loopback traffic must not go through a proxy set in the environment.
ENV = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def run(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=60, env=ENV, check=False
    )


@pytest.fixture
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "grpc_server.py"), "--port", "0", "--token", "s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on "), first + (proc.stderr.read() if proc.stderr else "")
        yield first.removeprefix("listening on ").strip()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_grpc_client_against_grpc_server(server: str) -> None:
    done = run("grpc_client.py", "--address", server, "--token", "s3cret")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert 'create_user                ok: user_id: "user-ada"' in out
    assert "send_email                 ok: sent 'hi' to ops@example.com" in out
    assert "send_email (bad address)   error: bad address 'nobody'" in out
    assert "get_task: create_user is Completed" in out
    assert "refused: NOT_FOUND (register tasks: no handler registered for 'resize_image')" in out


def test_grpc_server_refuses_a_wrong_token(server: str) -> None:
    done = run("grpc_client.py", "--address", server, "--token", "wrong")
    assert done.returncode != 0
    assert "AuthError: UNAUTHENTICATED: invalid bearer token" in done.stderr
    done = run("grpc_client.py", "--address", server, "--token", "s3cret")  # and keeps serving
    assert done.returncode == 0, done.stderr


DURABLE_OUTPUT = [
    "idempotent: True",
    'ops: message_id: "msg-ops@example.com"',
    'flaky: message_id: "msg-flaky@example.com"',
    "flaky attempts: 2",
    "refused: ALREADY_EXISTS",
]


def test_grpc_durable_example() -> None:
    done = run("grpc_durable.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == DURABLE_OUTPUT


@pytest.mark.needs_binary(REDIS_SERVER)
def test_grpc_durable_example_on_redis() -> None:
    with redis_server() as redis:
        done = run("grpc_durable.py", "--redis-url", f"{redis.url}?prefix=grpc-example")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == DURABLE_OUTPUT
