"""`workerctl worker` and gRPC: tokens (flag, file, environment; never echoed), TLS/mTLS, and no unauthenticated
server on a non-loopback address unless --insecure.

Measured before: `--grpc-listen 0.0.0.0:...` served the whole gRPC API with no authentication, no flag could add
it (mTLS was the only control), and the command's own help example bound 0.0.0.0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from click.testing import CliRunner
from ctl_helpers import Ctl
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_ctl_worker import line_with

from workerctl import cli
from workerctl._worker_grpc import is_loopback

HERE = Path(__file__).parent
TOKEN = "tok-" + uuid.uuid4().hex


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(
        cli, ["worker", *args], env={"WORKER_REDIS_URL": None, "WORKER_GRPC_TOKEN": None, **(env or {})}
    )


@pytest.mark.parametrize("listen", ["0.0.0.0:50052", "[::]:50052", ":50052", "worker.example.com:50052", "10.1.2.3:1"])
def test_a_non_loopback_listener_without_auth_is_refused(listen: str) -> None:
    result = invoke("os:getcwd", "--grpc-listen", listen)
    assert result.exit_code == 2
    assert f"refusing to serve gRPC on {listen} (not a loopback address) without authentication" in result.stderr
    assert "--insecure" in result.stderr


def test_tls_without_client_certificates_is_not_authentication(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    result = invoke("os:getcwd", "--grpc-listen", "0.0.0.0:1", "--grpc-tls-cert", str(tmp_path / "c.pem"),
                    "--grpc-tls-key", str(tmp_path / "k.pem"))  # fmt: skip
    assert result.exit_code == 2
    assert "refusing to serve gRPC" in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        ["--insecure"],
        ["--grpc-token", "abc"],
        ["--grpc-tls-cert", "c", "--grpc-tls-key", "k", "--grpc-tls-client-ca", "a"],
    ],
    ids=["insecure", "token", "mtls"],
)
def test_insecure_a_token_or_mtls_pass_the_check(extra: list[str]) -> None:
    result = invoke("os:getcwd", "--grpc-listen", "0.0.0.0:1", *extra)
    assert (result.exit_code, result.stderr) == (1, "Error: os:getcwd returned str, not a TaskManager\n")  # got past it


def test_loopback_addresses() -> None:
    for address in ("127.0.0.1:0", "localhost:50051", "[::1]:1", "127.0.0.2:5"):
        assert is_loopback(address), address
    for address in ("0.0.0.0:1", "[::]:1", ":1", "example.com:1", "192.168.0.1:1"):
        assert not is_loopback(address), address


def test_bad_token_options_are_clear_errors(tmp_path: Path) -> None:
    missing = invoke("os:getcwd", "--grpc-listen", "127.0.0.1:0", "--grpc-token-file", str(tmp_path / "nope"))
    assert missing.exit_code == 1
    assert "cannot read --grpc-token-file" in missing.stderr
    (tmp_path / "empty").write_text("# no token here\n\n")
    empty = invoke("os:getcwd", "--grpc-listen", "127.0.0.1:0", "--grpc-token-file", str(tmp_path / "empty"))
    assert (empty.exit_code, "holds no token" in empty.stderr) == (1, True)
    spaced = invoke("os:getcwd", "--grpc-listen", "127.0.0.1:0", "--grpc-token", "two words")
    assert spaced.exit_code == 2
    assert "two words" not in spaced.stderr  # a token is never echoed, not even a bad one
    orphan = invoke("os:getcwd", "--grpc-token", "abc")
    assert (orphan.exit_code, "need --grpc-listen" in orphan.stderr) == (2, True)
    half = invoke("os:getcwd", "--grpc-listen", "127.0.0.1:0", "--grpc-tls-cert", "c")
    assert (half.exit_code, "go together" in half.stderr) == (2, True)


def test_the_help_example_is_secure() -> None:
    result = invoke("--help")
    example = result.stdout.split("Example:")[1].split("Options:")[0]
    assert "--grpc-listen 0.0.0.0" in example
    assert "--grpc-token-file" in example
    assert "--grpc-tls-cert" in example


@pytest.fixture
def node_env(ctl: Ctl, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(tmp_path))
    return env


@pytest.fixture
def node(request: pytest.FixtureRequest, node_env: dict[str, str]) -> Iterator[tuple[int, str, subprocess.Popen[str]]]:
    args, extra_env = request.param
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:create_manager", *args]
    proc = subprocess.Popen(cmd, cwd=HERE, env={**node_env, **extra_env}, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        started = line_with(proc.stderr, "worker started")
        port = int(started.split("grpc=0.0.0.0:")[1].split()[0])
        yield port, started, proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert TOKEN not in started + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def get_task(port: int, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)]) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/worker.v1.WorkerService/GetTask")
        request = b"\x0a\x24" + str(uuid.uuid4()).encode()  # GetTaskRequest{id = 1: a 36-character UUID}
        try:
            call(request, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        return grpc.StatusCode.OK


def health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status)


@pytest.mark.parametrize(
    "node",
    [
        (["--grpc-listen", "0.0.0.0:0"], {"WORKER_GRPC_TOKEN": TOKEN}),
        (["--grpc-listen", "0.0.0.0:0", "--grpc-token", TOKEN], {}),
    ],
    ids=["env", "flag"],
    indirect=True,
)
def test_a_token_protects_every_worker_service_call(node: tuple[int, str, subprocess.Popen[str]]) -> None:
    port, started, _ = node
    assert "(plaintext, token auth (1 token))" in started
    assert get_task(port, ()) is grpc.StatusCode.UNAUTHENTICATED
    assert get_task(port, (("authorization", "Bearer wrong"),)) is grpc.StatusCode.UNAUTHENTICATED
    assert get_task(port, (("authorization", f"Bearer {TOKEN}"),)) is grpc.StatusCode.NOT_FOUND  # in: unknown id
    assert health(port) == health_pb2.HealthCheckResponse.SERVING  # health stays open for probes by default


def test_a_token_file_and_mtls(ctl: Ctl, tmp_path: Path, node_env: dict[str, str]) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server_cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "tokens").write_text(f"# ops\n{TOKEN}\nsecond-token\n")
    cmd = [sys.executable, "-m", "workerctl", "worker", "worker_app:create_manager", "--grpc-listen", "0.0.0.0:0",
           "--grpc-token-file", str(tmp_path / "tokens"), "--grpc-tls-cert", str(tmp_path / "cert.pem"),
           "--grpc-tls-key", str(tmp_path / "key.pem"), "--grpc-tls-client-ca", str(tmp_path / "ca.pem"),
           "--grpc-health", "auth"]  # fmt: skip
    with subprocess.Popen(cmd, cwd=HERE, env=node_env, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            started = line_with(proc.stderr, "worker started")
            assert "(mTLS, token auth (2 tokens))" in started, started
            assert TOKEN not in started
            port = int(started.split("grpc=0.0.0.0:")[1].split()[0])
            client_cert = ca.issue_cert("client@example.com")
            credentials = grpc.ssl_channel_credentials(
                ca.cert_pem.bytes(), client_cert.private_key_pem.bytes(), client_cert.cert_chain_pems[0].bytes()
            )
            with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
                stub: Any = health_pb2_grpc.HealthStub(channel)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
                reply = stub.Check(
                    health_pb2.HealthCheckRequest(service=""), metadata=(("authorization", "Bearer second-token"),)
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
