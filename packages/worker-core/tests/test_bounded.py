"""Bounded by default: nothing a long-running manager does makes its memory grow without bound."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import uuid
import weakref
from collections.abc import Awaitable, Callable

import pytest
from core_helpers import GUARD, manager, stop_quietly
from worker_core import RetentionPolicy, Task, TaskContext, TaskManager, TaskNotFoundError, TaskStatus


async def noop(ctx: TaskContext) -> None:
    return None


def fresh_execute() -> Callable[[TaskContext], Awaitable[None]]:
    """A new closure per call, so that each task's ``execute`` can be weakly referenced on its own."""
    marker = object()

    async def execute(ctx: TaskContext) -> None:
        assert marker is not None

    return execute


async def register_delayed(tm: TaskManager) -> tuple[uuid.UUID, weakref.ref[Callable[[TaskContext], Awaitable[None]]]]:
    execute = fresh_execute()
    task_id = await tm.register_task_after(Task(execute), 3600)
    return task_id, weakref.ref(execute)


async def test_cancelled_delayed_tasks_are_really_removed() -> None:
    tm = manager(max_tasks=10_000)
    await tm.start()
    try:
        tm.set_retention_policy(RetentionPolicy(max_entries=1))
        registered = [await register_delayed(tm) for _ in range(2_000)]
        assert tm.metrics().queue_depth == 2_000
        for task_id, _ in registered:
            await tm.cancel_task(task_id)
        assert tm.metrics().queue_depth == 0
        # max_entries=1 keeps the newest finished task: let a task of no interest be that one.
        last = Task(noop)
        await tm.register_task(last)
        await tm.wait(GUARD)
        gc.collect()
        alive = sum(ref() is not None for _, ref in registered)
        assert tm.running
        assert alive == 0, f"{alive} of 2000 cancelled delayed tasks are still referenced"
    finally:
        await stop_quietly(tm)


async def test_queue_names_are_forgotten_once_their_queue_is_empty() -> None:
    tm = manager(max_tasks=10_000)
    await tm.start()
    try:
        tasks = [Task(noop, queue=f"queue-{i}") for i in range(5_000)]
        await tm.register_tasks(*tasks)
        await tm.wait(GUARD)
        assert all(t.status is TaskStatus.COMPLETED for t in tasks)
        depths = tm.queue_depths()
        assert len(depths) == 0, f"{len(depths)} empty queues listed, e.g. {list(depths.items())[:3]}"
        tm.set_max_workers(0)
        await tm.register_task(Task(noop, queue="late"))
        assert tm.queue_depths() == {"late": 1}  # only queues with ready tasks are listed
    finally:
        await stop_quietly(tm)


def live_futures() -> int:
    gc.collect()
    return sum(isinstance(o, asyncio.Future) for o in gc.get_objects())


async def test_timed_out_waits_leave_no_future_behind() -> None:
    release = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        await release.wait()

    async def timed_out_wait(tm: TaskManager) -> bool:
        try:
            await tm.wait(timeout=0.001)
        except TimeoutError:
            return True
        return False

    async def round_of_waits() -> None:  # 100 at a time: 2,000 one after the other would take 2 s
        outcomes = await asyncio.gather(*(timed_out_wait(tm) for _ in range(100)))
        assert all(outcomes)

    tm = manager()
    await tm.start()
    try:
        await tm.register_task(Task(hang))
        await round_of_waits()  # a warm-up of the same shape: asyncio's leftovers of a round are in both counts
        before = live_futures()
        for _ in range(20):
            await round_of_waits()
        grown = live_futures() - before
        assert grown <= 5, f"{grown} more live futures after 2,000 timed-out waits"
    finally:
        release.set()
        await stop_quietly(tm)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
@pytest.mark.timeout(600)
async def test_memory_stays_flat_over_a_million_tasks() -> None:
    # Two measures, neither of which slows the run (tracemalloc made it five times slower): the interpreter's
    # count of live memory blocks catches one object kept per task (800,000 blocks), the resident set catches
    # what grows outside the object allocator (a list or a buffer growing by a few bytes per task).
    batch = 10_000
    tm = TaskManager(max_workers=8, max_tasks=batch, tasks_per_second=None)
    figures: dict[int, tuple[int, int]] = {}
    await tm.start()
    try:
        for done in range(batch, 1_000_001, batch):
            await tm.register_tasks(*(Task(noop) for _ in range(batch)))
            await tm.wait(60)
            if done in (200_000, 1_000_000):
                gc.collect()
                figures[done] = (sys.getallocatedblocks(), resident_bytes())
    finally:
        await stop_quietly(tm)
    blocks = figures[1_000_000][0] - figures[200_000][0]
    grown = figures[1_000_000][1] - figures[200_000][1]
    assert blocks <= 2_000, f"{blocks} more live memory blocks after 1,000,000 tasks than after 200,000"
    assert grown <= 2 * 1024 * 1024, f"resident memory grew by {grown / 1e6:.1f} MB from 200,000 to 1,000,000 tasks"


async def run_noops(tm: TaskManager, count: int, batch: int = 2_010) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    while len(ids) < count:
        ids += await tm.register_tasks(*(Task(noop) for _ in range(min(batch, count - len(ids)))))
        await tm.wait(GUARD)
    return ids


async def test_finished_tasks_are_bounded_by_the_default_retention() -> None:
    # Only the retention is the default here; the other values keep the run fast.
    async with TaskManager(max_workers=8, max_tasks=10_000, tasks_per_second=None) as tm:
        ids = await run_noops(tm, 10_050)
        assert len(tm.get_tasks()) <= 10_000
        assert tm.get_task(ids[-1]).status is TaskStatus.COMPLETED  # the newest is kept
        with pytest.raises(TaskNotFoundError):
            tm.get_task(ids[0])  # the oldest is not


async def test_no_retention_policy_keeps_every_finished_task() -> None:
    async with TaskManager(max_workers=8, max_tasks=10_000, tasks_per_second=None) as tm:
        tm.set_retention_policy(None)
        ids = await run_noops(tm, 10_050)
        assert len(tm.get_tasks()) == 10_050
        assert tm.get_task(ids[0]).status is TaskStatus.COMPLETED
