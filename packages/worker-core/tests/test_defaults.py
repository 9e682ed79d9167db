"""The defaults a Python user expects from ``TaskManager()``; ``with_defaults()`` keeps go-worker's."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta

import pytest
from core_helpers import GUARD, manager, stop_quietly
from worker_core import InvalidTaskError, QueueFullError, Retry, Task, TaskContext, TaskManager, TaskStatus


async def noop(ctx: TaskContext) -> None:
    return None


async def test_the_constructor_has_no_rate_limit() -> None:
    # max_tasks is given so that only the rate limit is the default here (go-worker's 5/s: 40 s for 200 tasks).
    tm = TaskManager(max_tasks=1_000)
    await tm.start()
    try:
        tasks = [Task(noop) for _ in range(200)]
        await tm.register_tasks(*tasks)
        async with asyncio.timeout(5):
            await tm.wait()
        assert all(t.status is TaskStatus.COMPLETED for t in tasks)
    finally:
        await stop_quietly(tm)


async def test_the_constructor_accepts_a_hundred_thousand_waiting_tasks() -> None:
    tm = TaskManager()
    await tm.start()
    try:
        tm.set_max_workers(0)
        await tm.register_tasks(*(Task(noop) for _ in range(1_000)))  # no QueueFullError
        assert tm.metrics().queue_depth == 1_000
    finally:
        await stop_quietly(tm)


def test_the_constructor_runs_ten_workers() -> None:
    assert TaskManager().max_workers == 10


async def test_with_defaults_keeps_go_workers_ten_waiting_tasks_and_cpu_count_workers() -> None:
    tm = TaskManager.with_defaults()
    assert tm.max_workers == (os.cpu_count() or 1)
    await tm.start()
    try:
        tm.set_max_workers(0)
        await tm.register_tasks(*(Task(noop) for _ in range(10)))
        with pytest.raises(QueueFullError):
            await tm.register_task(Task(noop))
    finally:
        await stop_quietly(tm)


async def test_retries_above_max_retries_are_rejected_not_capped() -> None:
    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("no")

    async with manager(max_retries=3) as tm:
        too_many = Task(fail, retries=10)
        with pytest.raises(InvalidTaskError):
            await tm.register_task(too_many)
        assert tm.get_tasks() == []
        assert tm.metrics().scheduled == 0
        at_cap, default = Task(fail, retries=3), Task(fail)
        await tm.register_tasks(at_cap, default)
        async with asyncio.timeout(GUARD):
            await tm.wait()
    assert at_cap.attempts == 4
    assert default.attempts == 4  # retries=None takes max_retries
    assert at_cap.status is default.status is TaskStatus.FAILED


async def test_a_naive_run_at_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = asyncio.Event()

    async def mark(ctx: TaskContext) -> None:
        ran.set()

    monkeypatch.setenv("TZ", "Etc/GMT-5")  # UTC+5: a naive "now" read as UTC is five hours ahead
    time.tzset()
    try:
        async with manager() as tm:
            task = Task(mark)
            await tm.register_task_at(task, datetime.now() + timedelta(seconds=0.2))
            async with asyncio.timeout(5):
                await ran.wait()
            await tm.wait(GUARD)
        assert task.status is TaskStatus.COMPLETED
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("delay", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_retry_rejects_a_delay_that_is_not_finite(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        Retry(delay=delay)
