"""Shared test helpers (not a conftest: mypy sees one module per package)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from worker_core import TaskManager

T = TypeVar("T")


def manager(**overrides: Any) -> TaskManager:
    """go-worker's test parameters (4 workers, 10 tasks), rate limit off, fast retries."""
    options: dict[str, Any] = {
        "max_workers": 4,
        "max_tasks": 10,
        "tasks_per_second": None,
        "timeout": 30.0,
        "retry_delay": 0.01,
        "max_retries": 3,
    }
    options.update(overrides)
    return TaskManager(**options)


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``condition`` (for states no event reports) with a generous deadline."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the states polled here have no event
            await asyncio.sleep(0.005)


#: Outer bound, in seconds, on anything that could hang when the runtime is wrong: a bug fails, never sticks.
GUARD = 10.0


async def stop_quietly(tm: TaskManager, limit: float = 5.0) -> None:
    """Cleanup at the end of a test: ``stop_now`` bounded by ``limit`` (a broken stop must not hang the suite).

    Release every thread the test blocked before calling it: a stop may wait for worker threads.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await tm.stop_now()


def other_pending_tasks() -> list[asyncio.Task[Any]]:
    """Asyncio tasks of the running loop that are not done, the caller's own excepted."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread and await its result.

    Not ``asyncio.to_thread``: the loop's default executor keeps its threads after the call, and the leak check
    fails a test that leaves a thread behind.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the awaiting test
            future.set_exception(exc)

    thread = threading.Thread(target=run, name="test-caller")
    thread.start()
    result = await asyncio.wrap_future(future)
    thread.join(GUARD)  # it has set the future: its last step
    return result
