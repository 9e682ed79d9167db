"""BlockingManager: the task manager for code with no event loop (plain threads, scripts, WSGI views)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from core_helpers import GUARD
from worker_core import (
    BlockingManager,
    ManagerStoppedError,
    Task,
    TaskCancelledError,
    TaskContext,
    TaskStatus,
    WorkerError,
    current_context,
)


async def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


class Boom(Exception):
    pass


async def boom() -> None:
    raise Boom("from the task")


def test_submit_and_wait_without_an_event_loop() -> None:
    with BlockingManager(max_workers=2, tasks_per_second=None) as tasks:
        handle = tasks.submit(add, 2, 3)
        assert handle.result(timeout=GUARD) == 5
        assert handle.done()
        assert handle.status is TaskStatus.COMPLETED
        assert tasks.submit(square, 9).result(timeout=GUARD) == 81
        with pytest.raises(Boom, match="from the task"):
            tasks.with_options(retries=0).submit(boom).result(timeout=GUARD)
        queued = tasks.with_options(priority=3, queue="q").submit(add, 1, 1)
        assert queued.result(timeout=GUARD) == 2
        assert tasks.manager.get_task(queued.id).queue == "q"


def test_many_threads_share_one_manager() -> None:
    with BlockingManager(max_workers=4, max_tasks=1_000, tasks_per_second=None) as tasks:

        def produce(base: int) -> list[int]:
            handles = [tasks.submit(add, base, i) for i in range(50)]
            return [h.result(timeout=GUARD) for h in handles]

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(produce, range(0, 800, 100)))
    assert results == [[base + i for i in range(50)] for base in range(0, 800, 100)]


def test_a_result_timeout_then_cancel() -> None:
    release = threading.Event()

    def blocked() -> str:
        release.wait(GUARD)
        return current_context().task_id.hex

    with BlockingManager(max_workers=1, tasks_per_second=None) as tasks:
        first = tasks.submit(blocked)
        waiting = tasks.submit(add, 1, 2)  # waits for the only worker
        with pytest.raises(TimeoutError):
            waiting.result(timeout=0.01)
        assert waiting.cancel() is True
        with pytest.raises(TaskCancelledError):
            waiting.result(timeout=GUARD)
        release.set()
        assert first.result(timeout=GUARD) == first.id.hex
        assert waiting.cancel() is False


def test_register_task_handle_and_run() -> None:
    async def answer(ctx: TaskContext) -> int:
        return 42

    with BlockingManager(tasks_per_second=None) as tasks:
        task_id = tasks.register_task(Task(answer))
        assert tasks.handle(task_id).result(timeout=GUARD) == 42
        tasks.wait(GUARD)
        assert tasks.run(asyncio.sleep(0, "ran on the loop")) == "ran on the loop"  # any coroutine runs there


def test_closed_manager_refuses_work_and_close_is_idempotent() -> None:
    tasks = BlockingManager(tasks_per_second=None)
    assert tasks.submit(add, 1, 1).result(timeout=GUARD) == 2  # started on first use
    tasks.close()
    tasks.close()
    with pytest.raises(ManagerStoppedError):
        tasks.submit(add, 1, 1)
    with pytest.raises(ManagerStoppedError):
        tasks.start()
    assert not any(t.name == "worker-core-loop" and t.is_alive() for t in threading.enumerate())


def test_use_from_its_own_loop_thread_is_an_error() -> None:
    with BlockingManager(tasks_per_second=None) as tasks:

        async def reentrant() -> None:
            tasks.submit(add, 1, 1)  # would block its own loop

        with pytest.raises(WorkerError, match="own loop thread"):
            tasks.with_options(retries=0).submit(reentrant).result(timeout=GUARD)


def test_a_failing_start_leaves_no_thread() -> None:
    before = {t.ident for t in threading.enumerate()}

    def broken() -> object:
        raise RuntimeError("cannot build")

    tasks = BlockingManager(broken)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="cannot build"):
        tasks.start()
    assert {t.ident for t in threading.enumerate() if t.is_alive()} <= before


def test_interpreter_exit_lets_running_tasks_finish() -> None:
    script = """
import time
from worker_core import BlockingManager

def slow():
    time.sleep(0.2)
    print("task finished", flush=True)

tasks = BlockingManager(tasks_per_second=None, stop_timeout=30)
tasks.submit(slow)
print("script done", flush=True)
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["script done", "task finished"]
    assert time.monotonic() - started < 60
