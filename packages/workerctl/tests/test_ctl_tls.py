"""TLS: --tls/--tls-insecure and rediss:// against a redis-server speaking TLS only on its TLS port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner
from worker_redis.testing import free_port, redis_server

from workerctl import cli


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    port = free_port()
    args = ["--tls-port", str(port), "--tls-auth-clients", "no", "--tls-ca-cert-file", str(folder / "ca.pem")]
    with redis_server(*args, "--tls-cert-file", str(folder / "cert.pem"), "--tls-key-file", str(folder / "key.pem")):
        yield port, folder


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["durable", "paused", *args], env={"WORKER_REDIS_URL": None})
    return result.exit_code, result.stdout, result.stderr


def test_tls_insecure_connects(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    assert run("--redis-addr", f"127.0.0.1:{port}", "--tls", "--tls-insecure") == (0, "paused=false\n", "")
    assert run("--redis-url", f"rediss://127.0.0.1:{port}/0", "--tls-insecure") == (0, "paused=false\n", "")


def test_tls_with_an_untrusted_certificate_is_one_line_exit_1(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    code, out, err = run("--redis-addr", f"127.0.0.1:{port}", "--tls", "--timeout", "2s")
    assert (code, out) == (1, "")
    assert err.startswith(f"Error: redis at 127.0.0.1:{port} is unreachable")
    assert err.count("\n") == 1


def test_plaintext_against_the_tls_port_fails_cleanly(tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    code, _, err = run("--redis-addr", f"127.0.0.1:{port}", "--timeout", "1s")
    assert code == 1
    assert err.startswith("Error: redis at")
