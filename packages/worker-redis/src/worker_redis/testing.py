"""A private ``redis-server`` for tests: started on a free loopback port, killed afterwards.

Never use the machine's shared Redis on 6379: tests start their own server with this helper.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker_core.testing.binaries import Binary, require_binary

__all__ = (
    "REDIS_CLI",
    "REDIS_SERVER",
    "RedisClusterServers",
    "RedisServer",
    "free_port",
    "go_worker_task_fields",
    "prefixes_per_master",
    "redis_cluster",
    "redis_server",
)


REDIS_SERVER = Binary(
    "redis-server",
    apt="redis-server",
    brew="redis",
    why="the Redis tests start their own on free loopback ports, never the machine's Redis",
)
"""The program :func:`redis_server` runs (``worker_core.testing.binaries`` reports it missing in one message)."""

REDIS_CLI = Binary(
    "redis-cli",
    apt="redis-tools",
    brew="redis",
    why="it assigns the slots of the private Redis Cluster the cluster tests start",
)
"""The program :func:`redis_cluster` runs besides ``redis-server`` (Debian's redis-server package brings it)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    port: int
    directory: Path
    args: Sequence[str] = ()
    password: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """URL for redis-py's ``from_url`` (with the password when one is set)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, with the same port, directory and data) and wait until it answers PING."""
        exe = require_binary(REDIS_SERVER)
        cmd = [
            exe,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            cmd += ["--requirepass", self.password]
        cmd += list(self.args)
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if self._answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    s.recv(64)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash, not a shutdown) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the server and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@contextlib.contextmanager
def redis_server(*args: str, password: str | None = None) -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="worker-redis-test-") as tmp:
        server = RedisServer(port=free_port(), directory=Path(tmp), args=args, password=password)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class RedisClusterServers:
    """The masters of a private Redis Cluster; ``url`` points at the first (redis-py discovers the rest)."""

    servers: list[RedisServer]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<first port>/0``."""
        return self.servers[0].url

    @property
    def ports(self) -> list[int]:
        """The masters' ports."""
        return [server.port for server in self.servers]


@contextlib.contextmanager
def redis_cluster(masters: int = 3, timeout: float = 30.0) -> Iterator[RedisClusterServers]:
    """Run a private Redis Cluster of ``masters`` masters (no replicas) on loopback ports.

    Needs ``redis-server`` and ``redis-cli`` (``redis-cli --cluster create`` assigns the slots).
    """
    cli = require_binary(REDIS_CLI)
    with contextlib.ExitStack() as stack:
        servers: list[RedisServer] = []
        for _ in range(masters):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="worker-redis-cluster-")))
            server = RedisServer(
                port=_cluster_port(),
                directory=folder,
                args=("--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf")),
            )
            server.start()
            stack.callback(server.stop)
            servers.append(server)
        nodes = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        for server in servers:
            while True:
                out = subprocess.run(
                    [cli, "-p", str(server.port), "cluster", "info"], capture_output=True, text=True, check=False
                ).stdout
                if "cluster_state:ok" in out:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {server.port} not ready within {timeout}s: {out[:200]}")
                time.sleep(0.05)
        yield RedisClusterServers(servers)


def prefixes_per_master(stem: str, masters: int = 3) -> list[str]:
    """One key prefix per master of an evenly sliced cluster (``stem0``, ``stem7``, ...).

    ``redis-cli --cluster create`` gives each of ``masters`` masters an equal run of the 16384 slots; the
    hash tag ``{prefix}`` of each returned prefix lands on a different one, so a test can cover them all.
    """
    from redis.crc import key_slot

    found: dict[int, str] = {}
    n = 0
    while len(found) < masters:
        name = f"{stem}{n}"
        found.setdefault(key_slot(("{" + name + "}").encode()) * masters // 16384, name)
        n += 1
    return [found[i] for i in range(masters)]


def go_worker_task_fields(
    *,
    handler: str,
    payload: bytes,
    queue: str,
    retries: int,
    attempts: int,
    now_ms: int,
    metadata: str = "",
) -> dict[str, str | bytes | int]:
    """The task hash exactly as go-worker's enqueue script writes it (priority 1, weight 1, no retry delay).

    Tests seed Redis with it to prove that records written by go-worker are read, listed and run.
    """
    return {
        "handler": handler,
        "payload": payload,
        "priority": 1,
        "queue": queue,
        "weight": 1,
        "retries": retries,
        "retry_delay_ms": 0,
        "attempts": attempts,
        "ready_at_ms": now_ms,
        "updated_at_ms": now_ms,
        "metadata": metadata,
    }
