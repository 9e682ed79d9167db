"""Pytest fixtures that fail a test which leaves an asyncio task or a thread running behind it.

A test suite opts in from its ``conftest.py`` (pytest finds fixtures by name there)::

    from worker_core.testing.leaks import no_leaked_tasks, no_leaked_threads  # noqa: F401

Both are ``autouse``. Needs pytest and pytest-asyncio (for the async fixture).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

__all__ = ("no_leaked_tasks", "no_leaked_threads")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail when a thread started during the test is still alive 5 s after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)  # a thread that was told to stop needs a moment to return
        leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads left behind: {leaked}"


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail when an asyncio task other than the test's own is still pending after it."""
    yield
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"asyncio tasks left behind: {leaked}"
