from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core_helpers import manager
from worker_core import ConfigurationError, DropPolicy, Result, Task, TaskContext, TaskStatus


async def noop(ctx: TaskContext) -> None:
    return None


async def test_subscriber_receives_a_result_with_its_task() -> None:
    async with manager() as tm:
        with tm.subscribe_results(1) as results:
            task_id = await tm.register_task(Task(noop))
            result = await anext(aiter(results))
    assert isinstance(result, Result)
    assert result.task.id == task_id
    assert result.status is TaskStatus.COMPLETED
    assert result.error is None


async def test_fan_out_to_two_subscribers() -> None:
    async with manager() as tm:
        first, second = tm.subscribe_results(1), tm.get_results()
        task_id = await tm.register_task(Task(noop))
        await tm.wait(10)
        assert [r.task.id for r in (first.get_nowait(), second.get_nowait()) if r] == [task_id, task_id]
        first.close()
        second.close()


async def test_one_result_per_task_published_before_wait_returns() -> None:
    async def fail_twice(ctx: TaskContext) -> int:
        if ctx.attempt < 3:
            raise RuntimeError("again")
        return ctx.attempt

    async with manager() as tm:
        results = tm.subscribe_results(10)
        await tm.register_task(Task(fail_twice, retries=3))
        await tm.wait(10)
        assert len(results) == 1
        result = results.get_nowait()
        assert result is not None
        assert result.result == 3
        results.close()


async def test_drop_newest_counts_every_dropped_result() -> None:
    async with manager(max_workers=1) as tm:
        results = tm.subscribe_results(1)
        for _ in range(4):
            await tm.register_task(Task(noop))
        await tm.wait(10)
        assert len(results) == 1
        assert tm.metrics().results_dropped == 3
        results.close()


async def test_drop_oldest_keeps_the_latest_and_counts_evictions() -> None:
    async with manager(max_workers=1) as tm:
        tm.set_results_drop_policy(DropPolicy.DROP_OLDEST)
        tm.set_max_workers(0)
        results = tm.subscribe_results(1)
        await tm.register_task(Task(noop, priority=2, name="second"))
        await tm.register_task(Task(noop, priority=1, name="first"))
        tm.set_max_workers(1)
        await tm.wait(10)
        last = results.get_nowait()
        assert last is not None
        assert last.task.name == "second"
        assert tm.metrics().results_dropped == 1  # the eviction is counted (go-worker does not)
        results.close()


async def test_iteration_ends_when_the_manager_stops_after_draining() -> None:
    tm = manager()
    await tm.start()
    results = tm.subscribe_results(5)
    await tm.register_task(Task(noop))
    await tm.stop_graceful(10)
    received = [r async for r in results]
    assert len(received) == 1
    assert results.closed
    late = tm.subscribe_results(1)
    assert [r async for r in late] == []


async def test_close_ends_iteration_and_stops_delivery() -> None:
    async with manager() as tm:
        results = tm.subscribe_results(5)
        waiter = asyncio.create_task(anext(aiter(results), None))
        await asyncio.sleep(0)
        results.close()
        assert await waiter is None
        await tm.register_task(Task(noop))
        await tm.wait(10)
        assert len(results) == 0
        results.close()  # idempotent


async def test_bad_buffer_and_policy_are_rejected() -> None:
    async with manager() as tm:
        with pytest.raises(ConfigurationError):
            tm.subscribe_results(0)
        bad: Any = "drop_everything"
        with pytest.raises(ConfigurationError):
            tm.set_results_drop_policy(bad)
