"""TaskManager(plain_runner="process"): plain functions in spawned pool processes; crashes fail only their task."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from core_helpers import GUARD, stop_quietly
from procs_helpers import die, fails, handler, pid, sleep_then_pid, square, unpicklable_result
from worker_core import (
    ConfigurationError,
    DurableHandlerSpec,
    DurableTask,
    TaskManager,
    TaskStatus,
    WorkerProcessError,
)
from worker_core.testing import InMemoryDurableBackend


def alive(p: int) -> bool:
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    return True


async def test_plain_functions_run_in_pool_processes_and_the_pool_is_reused() -> None:
    async with TaskManager(max_workers=4, plain_runner="process", process_pool_size=2) as tm:
        async with asyncio.timeout(GUARD * 3):
            squares = [await h for h in [await tm.submit(square, n) for n in range(20)]]
            pids = {await (await tm.submit(pid)) for _ in range(10)}
    assert squares == [n * n for n in range(20)]
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2  # at most process_pool_size processes, kept between tasks


async def test_a_dead_pool_process_fails_only_its_task_and_is_replaced() -> None:
    tm = TaskManager(max_workers=4, plain_runner="process", process_pool_size=2, retry_delay=0.01)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD * 3):
            survivor = await tm.submit(sleep_then_pid, 0.5)  # runs in the other process meanwhile
            victim = await tm.with_options(retries=0).submit(die, 3)
            with pytest.raises(WorkerProcessError, match="died"):
                await victim
            assert victim.status is TaskStatus.FAILED
            survivor_pid = await survivor
            assert await (await tm.submit(square, 7)) == 49  # a new process took the dead one's place
        assert alive(survivor_pid)
    finally:
        await stop_quietly(tm)


async def test_a_deadline_kills_the_pool_process() -> None:
    tm = TaskManager(max_workers=2, plain_runner="process", process_pool_size=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD * 3):
            first = await (await tm.submit(pid))
            slow = await tm.with_options(timeout=0.5, retries=0).submit(sleep_then_pid, 60)
            with pytest.raises(TimeoutError):
                await slow
            assert slow.status is TaskStatus.DEADLINE_EXCEEDED
            deadline = time.monotonic() + GUARD
            while alive(first) and time.monotonic() < deadline:  # noqa: ASYNC110 - another process's exit
                await asyncio.sleep(0.02)
            assert not alive(first)  # killed, not left running like a thread would be
            assert await (await tm.submit(square, 3)) == 9
    finally:
        await stop_quietly(tm)


async def test_what_cannot_be_pickled_fails_its_task_and_errors_come_back() -> None:
    async with TaskManager(max_workers=2, plain_runner="process", process_pool_size=1) as tm:
        async with asyncio.timeout(GUARD * 3):
            bad_arg = await tm.with_options(retries=0).submit(square, lambda: 1)  # type: ignore[call-overload]
            with pytest.raises(Exception, match="pickle"):
                await bad_arg
            bad_result = await tm.with_options(retries=0).submit(unpicklable_result)
            with pytest.raises(WorkerProcessError, match="result could not be pickled"):
                await bad_result
            error = await tm.with_options(retries=0).submit(fails)
            with pytest.raises(KeyError, match="from the pool process"):
                await error
            assert await (await tm.submit(square, 4)) == 16  # the same process still serves


async def test_a_plain_durable_handler_runs_in_a_pool_process_with_a_context_snapshot() -> None:
    tm = TaskManager(
        max_workers=2,
        plain_runner="process",
        process_pool_size=1,
        durable_backend=InMemoryDurableBackend(),
        durable_handlers={"h": DurableHandlerSpec(None, handler)},
        durable_poll_interval=0.01,
    )
    await tm.start()
    try:
        with tm.subscribe_results(1) as results:
            (task_id,) = await tm.register_durable_tasks(DurableTask("h", {"n": 21}))
            async with asyncio.timeout(GUARD * 3):
                result = await anext(results)
        assert result.status is TaskStatus.COMPLETED
        seen = result.result
        assert isinstance(seen, dict)
        assert seen["n"] == 42
        assert seen["ctx"] == "ProcessContext"
        assert seen["task_id"] == str(task_id)
        assert seen["pid"] != os.getpid()
    finally:
        await stop_quietly(tm)


def test_bad_runner_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="plain_runner"):
        TaskManager(plain_runner="fork")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="process_pool_size"):
        TaskManager(plain_runner="process", process_pool_size=0)
