"""A private PostgreSQL server for tests: ``initdb`` + ``pg_ctl`` in a temporary directory, on a free loopback port.

Never use the machine's shared server on 5432: tests start their own with :func:`postgres_server` and stop it
by its pid. The binaries are found through ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` or ``PATH``;
:func:`find_bindir` returns ``None`` when there are none. :data:`INITDB` and :data:`PG_CTL` describe them for
``worker_core.testing.binaries.require_binaries_for`` (one message naming the ``postgresql`` package).
PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (or ``nobody``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from worker_core.testing.binaries import Binary

__all__ = ("INITDB", "PG_CTL", "PostgresServer", "find_bindir", "free_port", "postgres_server")

_WHY = "the tests start their own PostgreSQL server"
#: ``initdb``: Debian puts it in ``/usr/lib/postgresql/<version>/bin``, off ``PATH``.
INITDB = Binary("initdb", apt="postgresql", brew="postgresql", why=_WHY, paths=("/usr/lib/postgresql/*/bin",))
#: ``pg_ctl``, beside ``initdb``.
PG_CTL = Binary("pg_ctl", apt="postgresql", brew="postgresql", why=_WHY, paths=("/usr/lib/postgresql/*/bin",))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None`` when PostgreSQL is not installed."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10)
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = INITDB.find()
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for candidate in candidates:
        folder = Path(candidate)
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _run_as() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as when this process is root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``directory``, listening on 127.0.0.1:``port`` with trust authentication."""

    port: int
    directory: Path
    bindir: Path
    user: str = "worker"
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """``postgresql://worker@127.0.0.1:<port>/postgres``."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        """The URL of another database of this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.directory / "data"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        ids = _run_as()
        kwargs: dict[str, object] = {}
        if ids is not None:
            kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
        result = subprocess.run(
            list(args), capture_output=True, text=True, check=False, timeout=timeout, cwd=self.directory, **kwargs
        )  # type: ignore[call-overload]
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr[-2000:]}")

    def init(self) -> None:
        """``initdb`` the data directory (trust authentication, UTF-8, no fsync: test data only)."""
        ids = _run_as()
        if ids is not None:
            os.chown(self.directory, *ids)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--locale=C",
        )  # fmt: skip

    def _options(self) -> str:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            **self.settings,
        }
        return " ".join(f"-c {key}={value}" for key, value in settings.items())

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.directory / "server.log"),
            "-o", self._options(),
            "-w", "-t", str(int(timeout)),
            "start",
        )  # fmt: skip

    def restart_immediate(self, timeout: float = 30.0) -> None:
        """``pg_ctl restart -m immediate``: a crash-like stop (no checkpoint, connections cut), then a start."""
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.data),
            "-l", str(self.directory / "server.log"),
            "-o", self._options(),
            "-m", "immediate",
            "-w", "-t", str(int(timeout)),
            "restart",
        )  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (first line of ``postmaster.pid``), or ``None`` when it is not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server by its pid (fast shutdown, SIGINT; SIGKILL if it does not go in ``timeout`` s)."""
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server log (for failure messages)."""
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def postgres_server(bindir: Path | None = None, **settings: str) -> Iterator[PostgresServer]:
    """Run a private PostgreSQL server for the duration of the ``with`` block.

    Raises:
        RuntimeError: no PostgreSQL binaries (install the ``postgresql`` package), or the server did not start.
    """
    folder = bindir or find_bindir()
    if folder is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found: install the 'postgresql' package")
    with tempfile.TemporaryDirectory(prefix="worker-postgres-test-") as tmp:
        server = PostgresServer(port=free_port(), directory=Path(tmp), bindir=folder, settings=dict(settings))
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
