"""The manager's life: its states, concurrent and cancelled starts and stops, bounded stops, loop affinity.

The names the rebuilt runtime adds (``ManagerState``, ``WrongLoopError``) are read as ``worker_core.<name>`` where
a test uses them, so that each test reports on its own (and after its other checks) until they exist.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import gc
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import pytest
import worker_core
from core_helpers import GUARD, in_thread, manager, other_pending_tasks, stop_quietly, until
from worker_core import (
    TERMINAL_STATUSES,
    DurableHandlerSpec,
    DurableTask,
    DurableTaskLease,
    Task,
    TaskContext,
    TaskHooks,
    TaskManager,
    TaskStatus,
    WorkerError,
)
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class Job(msgspec.Struct):
    n: int


async def noop(ctx: TaskContext) -> None:
    return None


class CountingBackend(ForwardingBackend[InMemoryDurableBackend]):
    """The in-memory backend behind a ``connect()`` that suspends (as a networked one does); counts dequeues."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.dequeues = 0
        self.dequeued = asyncio.Event()

    async def connect(self) -> None:
        await asyncio.sleep(0)  # stands for the round trip: concurrent start() calls overlap here

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        self.dequeues += 1
        self.dequeued.set()
        return await super().dequeue(limit, lease)


class SlowConnectBackend(CountingBackend):
    """``connect()`` blocks until ``proceed`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.connecting = asyncio.Event()
        self.proceed = asyncio.Event()

    async def connect(self) -> None:
        self.connecting.set()
        await self.proceed.wait()


def durable_manager(backend: Any, fn: Callable[[TaskContext, Job], Any]) -> TaskManager:
    return TaskManager(
        max_workers=2,
        tasks_per_second=None,
        durable_backend=backend,
        durable_handlers={"h": DurableHandlerSpec(None, fn, payload_type=Job)},
        durable_poll_interval=0.01,
    )


async def ignore_job(ctx: TaskContext, job: Job) -> None:
    return None


# ------------------------------------------------------------------------------------------- states


async def test_state_goes_new_running_stopped_and_running_follows_it() -> None:
    assert issubclass(worker_core.ManagerState, enum.StrEnum)
    assert [state.value for state in worker_core.ManagerState] == [
        "new",
        "starting",
        "running",
        "draining",
        "stopping",
        "stopped",
    ]
    tm = manager()
    seen = [(tm.state, tm.running)]
    await tm.start()
    try:
        seen.append((tm.state, tm.running))
    finally:
        await stop_quietly(tm)
    seen.append((tm.state, tm.running))
    state = worker_core.ManagerState
    assert seen == [(state.NEW, False), (state.RUNNING, True), (state.STOPPED, False)]


async def test_two_concurrent_starts_share_one_start() -> None:
    tm = manager()
    try:
        async with asyncio.timeout(GUARD):
            assert list(await asyncio.gather(tm.start(), tm.start())) == [None, None]
            assert tm.running
            task = Task(noop)
            await tm.register_task(task)
            await tm.wait()
            assert task.status is TaskStatus.COMPLETED
            assert tm.state is worker_core.ManagerState.RUNNING
    finally:
        await stop_quietly(tm)


async def test_two_concurrent_starts_of_a_durable_manager_leave_no_lease_loop_behind_after_stop_now() -> None:
    backend = CountingBackend()
    tm = durable_manager(backend, ignore_job)
    try:
        async with asyncio.timeout(GUARD):
            await asyncio.gather(tm.start(), tm.start())
            assert tm.running
            await backend.dequeued.wait()  # leasing has begun
            await tm.stop_now()
            after_stop = backend.dequeues
            backend.dequeued.clear()
            with pytest.raises(TimeoutError):  # a lease loop still running polls every 0.01 s
                async with asyncio.timeout(0.2):
                    await backend.dequeued.wait()
            assert backend.dequeues == after_stop
            assert other_pending_tasks() == []
            assert tm.state is worker_core.ManagerState.STOPPED
    finally:
        leftovers = other_pending_tasks()
        for leftover in leftovers:  # keep a leaked lease loop out of the next tests
            leftover.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        await stop_quietly(tm)


# ---------------------------------------------------------------------------------- stops, interrupted


async def test_a_cancelled_stop_now_still_completes_on_its_own() -> None:
    started, release = threading.Event(), threading.Event()

    def blocked(ctx: TaskContext) -> str:
        started.set()
        release.wait(30)
        return "released"

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            running, queued = Task(blocked), Task(noop)
            await tm.register_tasks(running, queued)
            await until(started.is_set)
            stopper = asyncio.create_task(tm.stop_now())
            await until(lambda: tm.state is worker_core.ManagerState.STOPPING)
            assert not stopper.done()
            stopper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stopper
            assert tm.state is worker_core.ManagerState.STOPPING  # the stop goes on without its caller
            release.set()
            await until(lambda: tm.state is worker_core.ManagerState.STOPPED)
            assert running.status in TERMINAL_STATUSES
            assert queued.status is TaskStatus.CANCELLED
            await tm.stop_now()  # returns at once
    finally:
        release.set()
        await stop_quietly(tm)


async def test_stop_now_awaited_inside_a_task_of_the_same_manager_does_not_deadlock() -> None:
    tm = manager(max_workers=2)

    async def stop_from_inside(ctx: TaskContext) -> None:
        await tm.stop_now()

    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(stop_from_inside, retries=0)
            await tm.register_task(task)
            await until(lambda: task.status in TERMINAL_STATUSES)
            await tm.stop_now()  # a concurrent stop returns once that stop is done
            assert task.status is TaskStatus.CANCELLED
            assert tm.state is worker_core.ManagerState.STOPPED
    finally:
        await stop_quietly(tm)


async def test_stop_graceful_awaited_inside_a_task_returns_and_the_stop_completes_after_it() -> None:
    tm = manager(max_workers=2)

    async def stop_from_inside(ctx: TaskContext) -> str:
        await tm.stop_graceful()
        return "returned"

    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(stop_from_inside, retries=0)
            await tm.register_task(task)
            await until(lambda: task.status in TERMINAL_STATUSES)
            assert task.status is TaskStatus.COMPLETED
            assert task.result == "returned"
            await until(lambda: tm.state is worker_core.ManagerState.STOPPED)
            assert not tm.running
    finally:
        await stop_quietly(tm)


async def test_a_retry_timer_firing_during_stop_now_leaves_no_task_waiting() -> None:
    started, release = threading.Event(), threading.Event()

    def blocked(ctx: TaskContext) -> None:
        started.set()
        release.wait(30)  # ignores ctx.cancelled: stop_now waits for it

    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("again")

    tm = manager(max_workers=2, retry_delay=0.05)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            blocker, failing = Task(blocked), Task(fail, retries=3)
            await tm.register_tasks(blocker, failing)
            await until(started.is_set)
            await until(lambda: failing.status is TaskStatus.RETRYING)
            attempts = failing.attempts
            stopper = asyncio.create_task(tm.stop_now())
            # No event reports a timer that would have fired: let the backoff (~0.05 s) run out mid-stop.
            await asyncio.sleep(0.3)
            assert not stopper.done()  # still waiting for the thread
            release.set()
            await stopper
        assert {blocker.status, failing.status} <= TERMINAL_STATUSES
        assert failing.status is TaskStatus.CANCELLED
        assert failing.attempts == attempts  # no attempt started during the stop
    finally:
        release.set()
        await stop_quietly(tm)


# ------------------------------------------------------------------------------------- bounded stops


@pytest.mark.parametrize("how", ["stop_graceful", "stop_now"])
async def test_a_stop_gives_up_on_a_thread_that_ignores_cancellation_past_its_bound(how: str) -> None:
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stubborn(ctx: TaskContext) -> None:
        started.set()
        release.wait(60)
        returned.set()

    tm = manager(max_workers=1, stop_timeout=0.2)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(stubborn)
            await tm.register_task(task)
            await until(started.is_set)
            if how == "stop_graceful":
                with pytest.raises(TimeoutError):
                    await tm.stop_graceful(timeout=0.2)
            else:
                await tm.stop_now(timeout=0.2)
            assert not returned.is_set()  # the stop returned while the thread is still blocked
            assert task.status is TaskStatus.CANCELLED
            assert tm.metrics().abandoned >= 1
    finally:
        release.set()
        await stop_quietly(tm)


@pytest.mark.parametrize("stubborn", [False, True], ids=["awaits-forever", "ignores-cancellation"])
async def test_an_on_finish_hook_that_never_returns_does_not_hold_up_stop_now(stubborn: bool) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def on_finish(task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> None:
        entered.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                if not stubborn:
                    raise

    tm = manager(max_workers=1)
    tm.set_hooks(TaskHooks(on_finish=on_finish))
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(noop)
            await tm.register_task(task)
            await entered.wait()
            await tm.stop_now(timeout=0.2)
            assert task.status is TaskStatus.COMPLETED
            assert tm.metrics().abandoned >= 1
    finally:
        release.set()
        await stop_quietly(tm)
        await until(lambda: not other_pending_tasks(), limit=5)  # the released hook returns


# ----------------------------------------------------------------------------------------- event loops


def run_bounded(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` in a thread of its own, failing the test when it does not return in time."""
    escaped: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # re-raised in the test's thread
            escaped.append(exc)

    thread = threading.Thread(target=run, name="bounded-asyncio-run", daemon=True)
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive(), "asyncio.run did not return: closing the loop hung"
    if escaped:
        raise escaped[0]


def test_a_manager_started_under_one_asyncio_run_raises_wrong_loop_error_under_another() -> None:
    tm = manager()

    async def first() -> None:
        await tm.start()  # and left running: the loop closes under it

    async def second() -> Exception | None:
        try:
            await tm.register_task(Task(noop))
        except Exception as exc:  # handed back to the test
            return exc
        return None

    asyncio.run(first())
    error = asyncio.run(second())
    assert isinstance(error, worker_core.WrongLoopError), f"register_task under a second loop gave {error!r}"
    assert isinstance(error, WorkerError)
    assert isinstance(error, RuntimeError)


def test_a_loop_closed_with_the_manager_running_neither_hangs_nor_destroys_pending_tasks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def forever(ctx: TaskContext) -> None:
            started.set()
            await asyncio.Event().wait()

        tm = manager()
        await tm.start()
        await tm.register_task(Task(forever))
        async with asyncio.timeout(GUARD):
            await started.wait()
        # Return without stopping: asyncio.run cancels what is left and closes the loop.

    gc.collect()  # garbage of earlier tests is reported now, before the capture
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_bounded(main)
        gc.collect()  # a pending task destroyed with its loop is reported when it is collected
    destroyed = [r.getMessage() for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert destroyed == []


async def test_register_task_threadsafe_from_another_thread_runs_the_task_promptly() -> None:
    ran = asyncio.Event()

    async def mark(ctx: TaskContext) -> None:
        ran.set()

    tm = manager()
    await tm.start()
    try:
        task = Task(mark)

        def register_from_thread() -> uuid.UUID:
            future = tm.register_task_threadsafe(task)
            assert isinstance(future, concurrent.futures.Future)
            return future.result(timeout=5)

        async with asyncio.timeout(5):
            task_id = await in_thread(register_from_thread)  # the loop sits idle meanwhile
            await ran.wait()
        assert task_id == task.id
        await tm.wait(GUARD)
        assert task.status is TaskStatus.COMPLETED
    finally:
        await stop_quietly(tm)


async def test_register_task_awaited_on_another_threads_loop_raises_wrong_loop_error() -> None:
    tm = manager()
    await tm.start()
    try:
        task = Task(noop)

        def register_on_another_loop() -> BaseException | None:
            try:
                asyncio.run(tm.register_task(task))
            except Exception as exc:  # handed back to the test
                return exc
            return None

        async with asyncio.timeout(GUARD):
            error = await in_thread(register_on_another_loop)
        assert isinstance(error, worker_core.WrongLoopError)
        assert tm.get_tasks() == []  # nothing was registered
    finally:
        await stop_quietly(tm)


# ---------------------------------------------------------------------------- cancellation at awaits


async def test_a_start_cancelled_while_the_backend_connects_leaves_the_manager_new_and_startable() -> None:
    ran = asyncio.Event()

    async def handle(ctx: TaskContext, job: Job) -> None:
        ran.set()

    backend = SlowConnectBackend()
    await backend.inner.enqueue(
        DurableTask("h", None, msgspec.json.encode(Job(1)), id=uuid.uuid4(), queue="default", retries=0)
    )
    tm = durable_manager(backend, handle)
    try:
        async with asyncio.timeout(GUARD):
            starter = asyncio.create_task(tm.start())
            await backend.connecting.wait()
            starter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await starter
            assert not tm.running
            assert backend.dequeues == 0
            assert (backend.inner.ready_count(), backend.inner.leased_count()) == (1, 0)  # nothing leased
            states = [tm.state]
            backend.proceed.set()
            await tm.start()
            states.append(tm.state)
            await ran.wait()
            assert states == [worker_core.ManagerState.NEW, worker_core.ManagerState.RUNNING]
    finally:
        backend.proceed.set()
        await stop_quietly(tm)


async def test_a_cancelled_stop_graceful_goes_on_and_stops_once_the_running_task_finished() -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def work(ctx: TaskContext) -> str:
        started.set()
        await gate.wait()
        return "done"

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(work)
            await tm.register_task(task)
            await started.wait()
            stopper = asyncio.create_task(tm.stop_graceful())
            await until(lambda: tm.state is worker_core.ManagerState.DRAINING)
            stopper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stopper
            assert task.status not in TERMINAL_STATUSES  # a cancelled caller does not cancel the drain
            gate.set()
            await until(lambda: tm.state is worker_core.ManagerState.STOPPED)
            assert task.status is TaskStatus.COMPLETED
            assert task.result == "done"
    finally:
        gate.set()
        await stop_quietly(tm)


async def test_cancel_task_while_its_async_on_start_hook_awaits_cancels_it_before_execute() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    ran: list[int] = []

    async def on_start(task: Task[Any]) -> None:
        entered.set()
        await release.wait()

    async def execute(ctx: TaskContext) -> None:
        ran.append(ctx.attempt)

    tm = manager(max_workers=1)
    tm.set_hooks(TaskHooks(on_start=on_start))
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(execute)
            await tm.register_task(task)
            await entered.wait()
            await tm.cancel_task(task.id)
            release.set()
            await tm.wait()
        assert task.status is TaskStatus.CANCELLED
        assert ran == []
    finally:
        release.set()
        await stop_quietly(tm)


async def test_cancel_task_while_its_async_on_finish_hook_awaits_keeps_its_status() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def on_finish(task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> None:
        entered.set()
        await release.wait()

    async def answer(ctx: TaskContext) -> int:
        return 42

    tm = manager(max_workers=1)
    tm.set_hooks(TaskHooks(on_finish=on_finish))
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(answer)
            await tm.register_task(task)
            await entered.wait()
            await tm.cancel_task(task.id)  # no exception
            assert task.status is TaskStatus.COMPLETED
            release.set()
            await tm.wait()
        assert task.status is TaskStatus.COMPLETED
        assert task.result == 42
    finally:
        release.set()
        await stop_quietly(tm)


async def test_wait_from_inside_one_of_the_managers_tasks_is_a_clear_error_not_a_hang() -> None:
    from worker_core import WorkerError

    async def waits_for_itself(ctx: TaskContext) -> None:
        await tm.wait(1)

    tm = manager(max_retries=0)
    async with asyncio.timeout(GUARD):
        async with tm:
            task = Task(waits_for_itself)
            await tm.register_task(task)
            await tm.wait(GUARD)
    assert task.status is TaskStatus.FAILED
    assert isinstance(task.error, WorkerError)
    assert "would wait for that task itself" in str(task.error)


async def test_a_graceful_stop_with_no_workers_cancels_what_can_never_start() -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def blocked(ctx: TaskContext) -> str:
        running.set()
        await release.wait()
        return "finished"

    async def never(ctx: TaskContext) -> None:
        return None

    tm = manager(max_workers=1)
    await tm.start()
    first = Task(blocked)
    await tm.register_task(first)
    async with asyncio.timeout(GUARD):
        await running.wait()
    waiting = [Task(never) for _ in range(3)]
    for task in waiting:
        await tm.register_task(task)
    tm.set_max_workers(0)  # the running task finishes; the waiting ones never could
    stop = asyncio.create_task(tm.stop_graceful())
    await asyncio.sleep(0)
    release.set()
    async with asyncio.timeout(GUARD):
        await stop  # before: waited forever for tasks no worker would ever start
    assert first.status is TaskStatus.COMPLETED
    assert [t.status for t in waiting] == [TaskStatus.CANCELLED] * 3
