"""Bad input: a clear typed error at once, and no half-made state (nothing written, nothing connected)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import trustme
from redis.asyncio import Redis
from redis_helpers import task
from worker_core import TaskManager
from worker_core.durable import DurableHandlerSpec
from worker_core.errors import BackendUnavailableError, ConfigurationError
from worker_redis import RedisDurableBackend
from worker_redis.testing import RedisServer, free_port, redis_server


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "non-empty"),
        ("http://127.0.0.1:6379/0", "redis:// or rediss://"),
        ("127.0.0.1:6379", "redis:// or rediss://"),
        ("redis://127.0.0.1:notaport/0", "invalid redis URL"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
        ("redis://127.0.0.1:6379/0?cluster=maybe", "cluster must be 1 or 0"),
        ("redis://127.0.0.1:6379/0?rate_limit=5", "rate_limit must be"),
        ("redis://127.0.0.1:6379/0?batch_size=many", "batch_size must be a number"),
        ("redis://127.0.0.1:6379/0?batch_size=0", "batch_size must be a positive int"),
        ("redis://127.0.0.1:6379/0?leader_lock=-1", "leader_lock"),
        ("redis://127.0.0.1:6379/0?bogus_option=1", "invalid redis URL options"),
        (f"redis://127.0.0.1:6379/0?prefix={quote('app{x')}", "unbalanced braces"),
        (f"redis://127.0.0.1:6379/0?prefix={quote('{}')}", "empty hash tag"),
    ],
)
def test_bad_url_is_a_configuration_error(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisDurableBackend.from_url(url)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"prefix": "a}b{"}, "unbalanced braces"),
        ({"prefix": "a{b"}, "unbalanced braces"),
        ({"batch_size": 0}, "batch_size"),
        ({"queue_weights": {"a": 0}}, "queue weight"),
        ({"queue_weights": {"a": 1.5}}, "queue weight"),
        ({"global_rate_limit": (0, 1)}, "global_rate_limit"),
        ({"global_rate_limit": (5, 0)}, "global_rate_limit"),
        ({"leader_lock": 0}, "leader_lock"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_option_is_a_configuration_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisDurableBackend.from_url("redis://127.0.0.1:6379/0", **options)


def test_client_is_required() -> None:
    with pytest.raises(ConfigurationError, match="client is required"):
        RedisDurableBackend(None)


def test_prefix_with_a_hash_tag_is_kept_as_go_worker_does() -> None:
    backend = RedisDurableBackend.from_url("redis://127.0.0.1:6379/0?prefix=%7Bapp%7D:jobs")
    assert backend.keys.ready("q") == "{app}:jobs:ready:q"


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    with redis_server(password="s3cret") as srv:
        yield srv


async def _dbsize(url: str) -> int:
    client = Redis.from_url(url)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


async def test_wrong_password_is_a_configuration_error_without_the_password(locked: RedisServer) -> None:
    for url in (f"redis://:nope@127.0.0.1:{locked.port}/0", f"redis://127.0.0.1:{locked.port}/0"):
        backend = RedisDurableBackend.from_url(url)
        with pytest.raises(ConfigurationError, match="authentication failed") as info:
            await backend.enqueue(task())
        assert "nope" not in str(info.value)
        assert not backend.is_connected
        await backend.aclose()
    assert await _dbsize(locked.url) == 0


async def test_a_task_manager_with_a_wrong_password_fails_at_start(locked: RedisServer) -> None:
    handlers: dict[str, DurableHandlerSpec[Any]] = {"noop": DurableHandlerSpec(None, lambda ctx, payload: None)}
    tm = TaskManager(durable_backend=f"redis://:nope@127.0.0.1:{locked.port}/0", durable_handlers=handlers)
    with pytest.raises(ConfigurationError, match="authentication failed") as info:
        await tm.start()
    assert "nope" not in str(info.value)
    await tm.stop_now()  # closes the backend it built from the URL: no unclosed-connection warning
    assert await _dbsize(locked.url) == 0


async def test_acl_user_and_password_from_the_url(locked: RedisServer) -> None:
    admin = Redis.from_url(locked.url)
    await admin.acl_setuser("alice", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    await admin.aclose()
    async with RedisDurableBackend.from_url(f"redis://alice:pw@127.0.0.1:{locked.port}/0?prefix=acl") as backend:
        await backend.enqueue(task())
        assert len(await backend.dequeue(1, 5)) == 1
    bad = RedisDurableBackend.from_url(f"redis://alice:wrong@127.0.0.1:{locked.port}/0")
    with pytest.raises(ConfigurationError, match="authentication failed"):
        await bad.connect()
    await bad.aclose()


@pytest.fixture
async def not_redis() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_non_redis_server_is_a_clear_error(not_redis: int) -> None:
    backend = RedisDurableBackend.from_url(f"redis://127.0.0.1:{not_redis}/0")
    with pytest.raises(ConfigurationError, match="does not speak the Redis protocol"):
        await backend.connect()
    assert not backend.is_connected
    await backend.aclose()


async def test_nothing_listening_is_backend_unavailable() -> None:
    port = free_port()
    backend = RedisDurableBackend.from_url(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(BackendUnavailableError, match=f"redis at 127.0.0.1:{port} is unreachable"):
        await backend.dequeue(1, 5)
    await backend.aclose()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
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


async def test_rediss_url_speaks_tls(tls: tuple[int, Path]) -> None:
    port, folder = tls
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={quote(str(folder / 'ca.pem'))}&prefix=tls"
    async with RedisDurableBackend.from_url(url) as backend:
        await backend.enqueue(task(payload=b"secret"))
        [lease] = await backend.dequeue(1, 5)
        assert lease.task.payload == b"secret"
        await backend.ack(lease)


async def test_rediss_with_an_untrusted_certificate_is_unavailable(tls: tuple[int, Path]) -> None:
    port, _ = tls
    backend = RedisDurableBackend.from_url(f"rediss://127.0.0.1:{port}/0")
    with pytest.raises(BackendUnavailableError):
        await backend.connect()
    await backend.aclose()
