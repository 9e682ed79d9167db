"""Plain functions in the thread pool: a timed-out thread frees its worker, and the pool does not pile up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from core_helpers import GUARD, manager, stop_quietly, until
from worker_core import Task, TaskContext, TaskStatus, TaskTimeoutError


async def quick_async(ctx: TaskContext) -> str:
    return "quick"


def quick_plain(ctx: TaskContext) -> str:
    return "quick"


@pytest.mark.parametrize("second_fn", [quick_async, quick_plain], ids=["second-async", "second-plain"])
async def test_a_timed_out_plain_function_frees_its_worker_while_its_thread_still_runs(
    second_fn: Callable[[TaskContext], Any],
) -> None:
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(ctx: TaskContext) -> str:
        started.set()
        release.wait(30)  # ignores ctx.cancelled
        returned.set()
        return "late"

    tm = manager(max_workers=1, timeout=0.1, max_retries=0)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            slow = Task(stubborn)
            await tm.register_task(slow)
            await until(started.is_set)
            second = Task(second_fn, timeout=GUARD)
            await tm.register_task(second)  # waits for the only worker
            await tm.wait()
            assert not returned.is_set()  # the first thread is still blocked
            assert slow.status is TaskStatus.DEADLINE_EXCEEDED
            assert isinstance(slow.error, TaskTimeoutError)
            assert second.status is TaskStatus.COMPLETED
            assert second.result == "quick"
            assert tm.metrics().abandoned_threads == 1
            release.set()
            await until(lambda: tm.metrics().abandoned_threads == 0)
            assert returned.is_set()
            assert slow.status is TaskStatus.DEADLINE_EXCEEDED  # a late return changes nothing
    finally:
        release.set()
        await stop_quietly(tm)


async def test_growing_max_workers_step_by_step_keeps_one_pool_of_threads() -> None:
    before = threading.active_count()
    tm = manager(max_workers=1, max_tasks=16)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            for n in range(1, 17):
                tm.set_max_workers(n)
                barrier = threading.Barrier(n)  # n plain tasks at once: the step needs n threads

                def meet(ctx: TaskContext, barrier: threading.Barrier = barrier) -> int:
                    return barrier.wait(timeout=5)

                tasks = [Task(meet) for _ in range(n)]
                await tm.register_tasks(*tasks)
                await tm.wait()
                assert [t.status for t in tasks] == [TaskStatus.COMPLETED] * n, f"step {n}"
        threads = threading.active_count()
        assert threads <= before + 16 + 2, f"{threads - before} threads for at most 16 workers"
    finally:
        await stop_quietly(tm)
