"""Programs a test suite needs on the machine (``redis-server``, ``initdb``, ...), and one clear error without them.

A suite that starts real servers says which programs it needs; when one is missing the whole run stops
with a single message naming each program and how to install it, instead of one error per test::

    # conftest.py
    from worker_core.testing.binaries import Binary, register_marker, require_binaries_for

    REDIS_SERVER = Binary("redis-server", apt="redis-server", brew="redis", why="the tests start their own")


    def pytest_configure(config: pytest.Config) -> None:
        register_marker(config)


    def pytest_collection_finish(session: pytest.Session) -> None:
        require_binaries_for(session.items, REDIS_SERVER)  # every test here needs it

A suite where only some modules need a program marks them (``pytestmark = pytest.mark.needs_binary(BINARY)``)
and calls ``require_binaries_for(session.items)``: the check then runs only when a collected test carries
the marker.
Outside pytest, :func:`require_binary` returns the program's path or raises :class:`MissingBinaryError`
with the same message. Importing this module needs pytest only for :func:`require_binaries_for`.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = (
    "MARKER",
    "Binary",
    "MissingBinaryError",
    "missing_binaries_message",
    "register_marker",
    "require_binaries_for",
    "require_binary",
)

MARKER = "needs_binary"
"""The pytest marker a test or module carries to say it needs a program: ``pytest.mark.needs_binary(binary)``."""


@dataclass(frozen=True)
class Binary:
    """A program found on ``PATH`` (or in ``paths``), with how to install it where it is missing.

    Attributes:
        name: the executable's name (``redis-server``).
        apt: the Debian/Ubuntu package that provides it.
        brew: the Homebrew formula that provides it.
        why: what the tests do with it, shown in the message.
        paths: more directories to search after ``PATH``, as glob patterns (Debian installs ``initdb`` in
            ``/usr/lib/postgresql/*/bin``, which is not on ``PATH``); the highest match sorted by name wins.
    """

    name: str
    apt: str | None = None
    brew: str | None = None
    why: str = ""
    paths: tuple[str, ...] = ()

    def find(self) -> str | None:
        """The program's path, or ``None`` when it is not installed."""
        found = shutil.which(self.name)
        if found is not None:
            return found
        for pattern in self.paths:
            for folder in sorted(glob.glob(pattern), reverse=True):
                candidate = os.path.join(folder, self.name)
                if os.access(candidate, os.X_OK):
                    return candidate
        return None

    def install_hint(self) -> str:
        """One line: how to install the program (``apt-get install redis-server`` on Debian/Ubuntu, ...)."""
        ways = []
        if self.apt:
            ways.append(f"`sudo apt-get install {self.apt}` (Debian/Ubuntu)")
        if self.brew:
            ways.append(f"`brew install {self.brew}` (macOS)")
        if not ways:
            return f"install {self.name} and put it on PATH"
        return "install it with " + " or ".join(ways) + ", or put it on PATH"


class MissingBinaryError(RuntimeError):
    """A program the caller needs is not installed; the message names it and how to install it."""

    def __init__(self, missing: Sequence[Binary]) -> None:
        self.missing = tuple(missing)
        super().__init__(missing_binaries_message(self.missing))


def missing_binaries_message(missing: Sequence[Binary]) -> str:
    """The text of :class:`MissingBinaryError`: each missing program, why it is needed and how to install it."""
    lines = [f"{len(missing)} program(s) these tests need are not on PATH:"]
    for binary in missing:
        why = f" ({binary.why})" if binary.why else ""
        lines.append(f"  {binary.name}{why}: {binary.install_hint()}")
    return "\n".join(lines)


def require_binary(binary: Binary) -> str:
    """The path of ``binary``; raises :class:`MissingBinaryError` when it is not installed."""
    found = binary.find()
    if found is None:
        raise MissingBinaryError([binary])
    return found


def register_marker(config: pytest.Config) -> None:
    """Declare the ``needs_binary`` marker (suites run with ``--strict-markers``); call from ``pytest_configure``."""
    config.addinivalue_line("markers", f"{MARKER}(binary): the test needs this program installed (a Binary)")


def require_binaries_for(items: Iterable[pytest.Item], *always: Binary) -> None:
    """Stop the run with one message when a program the collected tests need is missing.

    Call it from ``pytest_collection_finish`` with ``session.items`` (the tests left after ``-k``, ``-m`` and
    ``--deselect``). ``always`` lists the programs every test of the suite
    needs (checked whenever a test was collected); a test or module marked ``needs_binary(binary)`` adds
    ``binary``. Exits with pytest's usage-error status (4): nothing ran, so nothing passed or failed.
    """
    import pytest

    collected = list(items)
    if not collected:
        return
    needed: dict[str, Binary] = {binary.name: binary for binary in always}
    for item in collected:
        for mark in item.iter_markers(MARKER):
            for binary in mark.args:
                if not isinstance(binary, Binary):
                    raise TypeError(f"{MARKER} takes Binary objects, got {binary!r} on {item.nodeid}")
                needed.setdefault(binary.name, binary)
    missing = [binary for binary in needed.values() if binary.find() is None]
    if missing:
        raise pytest.UsageError(missing_binaries_message(missing))
