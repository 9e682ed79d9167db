from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from core_helpers import manager, until
from worker_core import (
    Abort,
    InvalidTaskError,
    ManagerStoppedError,
    QueueFullError,
    Retry,
    Task,
    TaskAlreadyStartedError,
    TaskCancelledError,
    TaskContext,
    TaskExistsError,
    TaskManager,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
)


async def noop(ctx: TaskContext) -> None:
    return None


async def test_register_then_get_task_and_result() -> None:
    async def double(ctx: TaskContext) -> int:
        return 21 * 2

    async with manager() as tm:
        task = Task(double, name="double")
        task_id = await tm.register_task(task)
        assert isinstance(task_id, uuid.UUID)
        assert tm.get_task(task_id) is task
        await tm.wait(10)
    assert task.status is TaskStatus.COMPLETED
    assert task.result == 42
    assert task.error is None
    assert task.started_at is not None
    assert task.completed_at is not None
    assert task.started_at <= task.completed_at <= datetime.now(UTC)


async def test_status_is_queued_before_a_worker_can_see_it() -> None:
    seen: list[TaskStatus | None] = []
    async with manager() as tm:
        task = Task(noop)
        assert task.status is None
        await tm.register_task(task)
        seen.append(task.status)
        await tm.wait(10)
    assert seen[0] in (TaskStatus.QUEUED, TaskStatus.COMPLETED)
    assert task.status is TaskStatus.COMPLETED


async def test_lower_priority_value_runs_first_and_later_tasks_overtake_queued_ones() -> None:
    order: list[str] = []

    async def record(ctx: TaskContext) -> None:
        order.append(ctx.task.name)

    async with manager(max_workers=1) as tm:
        tm.set_max_workers(0)
        for name, priority in (("p5", 5), ("p3", 3), ("p9", 9)):
            await tm.register_task(Task(record, name=name, priority=priority))
        await tm.register_task(Task(record, name="late-p1", priority=1))
        assert tm.metrics().queue_depth == 4
        tm.set_max_workers(1)
        await tm.wait(10)
    assert order == ["late-p1", "p3", "p5", "p9"]


async def test_weight_breaks_priority_ties() -> None:
    order: list[str] = []

    async def record(ctx: TaskContext) -> None:
        order.append(ctx.task.name)

    async with manager(max_workers=1) as tm:
        tm.set_max_workers(0)
        await tm.register_task(Task(record, name="w1", weight=1))
        await tm.register_task(Task(record, name="w5", weight=5))
        await tm.register_task(Task(record, name="w0", weight=0))  # <= 0 means 1
        tm.set_max_workers(1)
        await tm.wait(10)
    assert order[0] == "w5"
    assert sorted(order[1:]) == ["w0", "w1"]


async def test_weighted_queues_through_the_manager_reproduce_the_go_vector() -> None:
    order: list[str] = []

    async def record(ctx: TaskContext) -> None:
        order.append(ctx.task.name)

    async with manager(max_workers=1, max_tasks=18, queue_weights={"critical": 3, "bulk": 2}) as tm:
        tm.set_max_workers(0)
        serial = 0
        for queue in ("critical", "", "bulk"):  # "" is the default queue, weight 1
            for i in range(6):
                serial += 1  # ids ascending: each queue pops in push order
                await tm.register_task(
                    Task(record, name=f"{queue or 'default'}-{i}", queue=queue, id=uuid.UUID(int=serial))
                )
        tm.set_max_workers(1)
        await tm.wait(10)
    assert order == [
        "bulk-0", "bulk-1", "critical-0", "critical-1", "critical-2", "default-0",
        "bulk-2", "bulk-3", "critical-3", "critical-4", "critical-5", "default-1",
        "bulk-4", "bulk-5", "default-2", "default-3", "default-4", "default-5",
    ]  # fmt: skip


async def test_full_queue_raises_at_once_and_keeps_what_was_accepted() -> None:
    async with manager(max_tasks=2) as tm:
        tm.set_max_workers(0)
        first = await tm.register_task(Task(noop))
        await tm.register_task(Task(noop))
        with pytest.raises(QueueFullError, match=r"max 2"):
            await tm.register_task(Task(noop))
        assert len(tm.get_tasks()) == 2
        assert tm.get_task(first).status is TaskStatus.QUEUED
        tm.set_max_workers(2)
        await tm.wait(10)
        assert tm.metrics().completed == 2


async def test_sync_function_runs_in_a_worker_thread() -> None:
    main_thread = threading.get_ident()

    def where(ctx: TaskContext) -> int:
        return threading.get_ident()

    async with manager() as tm:
        task = Task(where)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.COMPLETED
    assert task.result != main_thread


async def test_exception_fails_the_task_with_its_error() -> None:
    async def boom(ctx: TaskContext) -> None:
        raise ValueError("boom")

    async with manager() as tm:
        task = Task(boom, retries=0)
        await tm.register_task(task)
        await tm.wait(10)
        metrics = tm.metrics()
    assert task.status is TaskStatus.FAILED
    assert isinstance(task.error, ValueError)
    assert metrics.failed == 1  # counted once (go-worker counts it twice)
    assert metrics.retried == 0


async def test_retries_then_completes_and_counts_each_retry() -> None:
    attempts: list[int] = []

    async def flaky(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    async with manager(max_retries=5) as tm:
        task = Task(flaky, retries=5)
        await tm.register_task(task)
        await tm.wait(10)
        metrics = tm.metrics()
    assert task.status is TaskStatus.COMPLETED
    assert attempts == [1, 2, 3]
    assert metrics.retried == 2
    assert metrics.failed == 0


async def test_retries_default_to_max_retries_and_more_is_an_error_not_a_cap() -> None:
    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("no")

    async with manager(max_retries=2) as tm:
        default, fewer, too_many = Task(fail), Task(fail, retries=1), Task(fail, retries=10)
        with pytest.raises(ExceptionGroup) as caught:
            await tm.register_tasks(default, fewer, too_many)
        (error,) = caught.value.exceptions
        assert isinstance(error, InvalidTaskError)
        assert "max_retries=2" in str(error)
        assert too_many.status is TaskStatus.INVALID
        await tm.wait(10)
        metrics = tm.metrics()
    assert default.attempts == 3
    assert fewer.attempts == 2
    assert metrics.failed == 2
    assert metrics.retried == 3
    assert len(tm.get_tasks()) == 2


async def test_retry_signal_counts_against_retries_and_abort_fails_at_once() -> None:
    async def retry_always(ctx: TaskContext) -> None:
        raise Retry(delay=0)

    async def abort(ctx: TaskContext) -> None:
        raise Abort("give up")

    async with manager() as tm:
        retried, aborted = Task(retry_always, retries=2), Task(abort, retries=3)
        await tm.register_tasks(retried, aborted)
        await tm.wait(10)
    assert retried.status is TaskStatus.FAILED
    assert retried.attempts == 3
    assert isinstance(retried.error, Retry)
    assert aborted.status is TaskStatus.FAILED
    assert aborted.attempts == 1
    assert isinstance(aborted.error, Abort)


async def test_default_timeout_ends_the_task_deadline_exceeded() -> None:
    started = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        started.set()
        await asyncio.Event().wait()

    async with manager(timeout=0.05, max_retries=0) as tm:
        task = Task(hang)
        await tm.register_task(task)
        await tm.wait(10)
    assert started.is_set()
    assert task.status is TaskStatus.DEADLINE_EXCEEDED
    assert isinstance(task.error, TaskTimeoutError)
    assert isinstance(task.error, TimeoutError)


async def test_task_timeout_ends_a_sync_function_at_its_deadline_and_sets_its_event() -> None:
    saw_the_event = threading.Event()

    def polite(ctx: TaskContext) -> str:
        if ctx.cancelled.wait(10):
            saw_the_event.set()
        raise TimeoutError("stopped as asked")

    async with manager(max_retries=0) as tm:
        task = Task(polite, timeout=0.05)
        await tm.register_task(task)
        await tm.wait(10)
        # The attempt ended at its deadline, not when the function got round to returning.
        assert task.status is TaskStatus.DEADLINE_EXCEEDED
        assert isinstance(task.error, TaskTimeoutError)
        await until(saw_the_event.is_set)
        await until(lambda: tm.metrics().abandoned_threads == 0)


async def test_timed_out_attempt_is_retried_with_a_fresh_deadline() -> None:
    async def slow_first(ctx: TaskContext) -> int:
        assert ctx.deadline is not None
        assert ctx.remaining() is not None
        if ctx.attempt == 1:
            await asyncio.Event().wait()
        return ctx.attempt

    async with manager() as tm:
        task = Task(slow_first, timeout=0.05, retries=1)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.COMPLETED
    assert task.result == 2


async def test_cancel_running_async_task_interrupts_it_at_once() -> None:
    started = asyncio.Event()
    interrupted = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            interrupted.set()
            raise

    async with manager() as tm:
        task_id = await tm.register_task(Task(hang, retries=3))
        await started.wait()
        await tm.cancel_task(task_id)
        await tm.wait(10)
        task = tm.get_task(task_id)
        metrics = tm.metrics()
    assert interrupted.is_set()
    assert task.status is TaskStatus.CANCELLED
    assert isinstance(task.error, TaskCancelledError)
    assert task.attempts == 1  # cancellation is never retried
    assert metrics.cancelled == 1


async def test_cancel_running_sync_task_sets_its_event() -> None:
    started = threading.Event()

    def poll(ctx: TaskContext) -> None:
        started.set()
        assert ctx.cancelled.wait(10)
        raise RuntimeError("cancelled")

    async with manager() as tm:
        task_id = await tm.register_task(Task(poll))
        await until(started.is_set)
        await tm.cancel_task(task_id)
        await tm.wait(10)
    assert tm.get_task(task_id).status is TaskStatus.CANCELLED


async def test_cancel_queued_and_finished_tasks() -> None:
    async with manager() as tm:
        tm.set_max_workers(0)
        queued = Task(noop)
        await tm.register_task(queued)
        await tm.cancel_task(queued.id)
        assert queued.status is TaskStatus.CANCELLED
        assert tm.metrics().queue_depth == 0
        tm.set_max_workers(1)
        done = Task(noop)
        await tm.register_task(done)
        await tm.wait(10)
        await tm.cancel_task(done.id)  # finished: nothing happens, no error
        assert done.status is TaskStatus.COMPLETED
        with pytest.raises(TaskNotFoundError):
            await tm.cancel_task(uuid.uuid4())


async def test_cancel_task_in_backoff() -> None:
    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("again")

    async with manager(max_workers=1, retry_delay=30.0) as tm:
        task = Task(fail, retries=1)
        await tm.register_task(task)
        await until(lambda: task.status is TaskStatus.RETRYING)
        await tm.cancel_task(task.id)
        await tm.wait(10)
    assert task.status is TaskStatus.CANCELLED


async def test_register_task_at_runs_not_before_run_at() -> None:
    ran_at: list[datetime] = []

    async def mark(ctx: TaskContext) -> None:
        ran_at.append(datetime.now(UTC))

    async with manager() as tm:
        run_at = datetime.now(UTC) + timedelta(milliseconds=100)
        task = Task(mark)
        await tm.register_task_at(task, run_at.replace(tzinfo=None))  # naive means UTC
        assert task.status is TaskStatus.QUEUED
        assert tm.metrics().queue_depth == 1
        await tm.wait(10)
    assert ran_at[0] >= run_at


async def test_register_task_after_and_cancel_scheduled_task() -> None:
    ran = asyncio.Event()

    async def mark(ctx: TaskContext) -> None:
        ran.set()

    async with manager() as tm:
        later = Task(mark)
        await tm.register_task_after(later, 0.25)
        await tm.cancel_task(later.id)
        await tm.wait(10)
        assert later.status is TaskStatus.CANCELLED
        soon = Task(noop)
        await tm.register_task_after(soon, timedelta(milliseconds=10))
        await tm.wait(10)
        assert soon.status is TaskStatus.COMPLETED
    assert not ran.is_set()


async def test_execute_task_runs_a_queued_task_in_the_caller() -> None:
    async def answer(ctx: TaskContext) -> int:
        return 42

    async def fail(ctx: TaskContext) -> None:
        raise KeyError("nope")

    async with manager() as tm:
        tm.set_max_workers(0)  # no worker can take it first
        ok, bad = Task(answer), Task(fail, retries=0)
        await tm.register_tasks(ok, bad)
        assert await tm.execute_task(ok.id, timeout=10) == 42
        with pytest.raises(KeyError):
            await tm.execute_task(bad.id)
        with pytest.raises(TaskAlreadyStartedError):
            await tm.execute_task(ok.id)
        with pytest.raises(TaskNotFoundError):
            await tm.execute_task(uuid.uuid4())
        await tm.wait(10)
    assert ok.status is TaskStatus.COMPLETED
    assert bad.status is TaskStatus.FAILED


async def test_wait_raises_timeout_error() -> None:
    async with manager() as tm:
        tm.set_max_workers(0)
        await tm.register_task(Task(noop))
        with pytest.raises(TimeoutError):
            await tm.wait(0.01)
        tm.set_max_workers(1)
        await tm.wait(10)


async def test_stop_graceful_finishes_queued_and_running_work() -> None:
    done: list[int] = []

    async def work(ctx: TaskContext) -> None:
        await asyncio.sleep(0.01)
        done.append(1)

    tm = manager(max_workers=2)
    await tm.start()
    for _ in range(6):
        await tm.register_task(Task(work))
    await tm.stop_graceful(10)
    assert len(done) == 6
    assert not tm.running
    with pytest.raises(ManagerStoppedError):
        await tm.register_task(Task(noop))


async def test_stop_graceful_timeout_cancels_the_rest_and_raises() -> None:
    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    tm = manager(max_workers=1)
    await tm.start()
    running, queued = Task(hang), Task(hang)
    await tm.register_tasks(running, queued)
    with pytest.raises(TimeoutError):
        await tm.stop_graceful(0.05)
    assert running.status is TaskStatus.CANCELLED
    assert queued.status is TaskStatus.CANCELLED
    assert not tm.running


async def test_stop_now_cancels_everything_and_waits_for_workers() -> None:
    started = threading.Event()

    def poll(ctx: TaskContext) -> None:
        started.set()
        ctx.cancelled.wait(10)

    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("x")

    tm = manager(max_workers=2, retry_delay=30.0)
    await tm.start()
    sync_task, backoff, delayed, queued = Task(poll), Task(fail, retries=1), Task(noop), Task(noop)
    await tm.register_tasks(sync_task, backoff)
    await tm.register_task_after(delayed, 60)
    await until(started.is_set)
    await until(lambda: backoff.status is TaskStatus.RETRYING)
    tm.set_max_workers(0)
    await tm.register_task(queued)
    await tm.stop_now()
    await tm.stop_now()  # idempotent
    # The thread saw its event and returned normally: like go-worker, a clean return wins.
    assert sync_task.status is TaskStatus.COMPLETED
    assert backoff.status is delayed.status is queued.status is TaskStatus.CANCELLED
    assert tm.metrics().running == 0


async def test_set_max_workers_grows_and_shrinks() -> None:
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def track(ctx: TaskContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    async with manager(max_workers=1) as tm:
        for _ in range(4):
            await tm.register_task(Task(track))
        await until(lambda: running == 1)
        tm.set_max_workers(3)
        await until(lambda: running == 3)
        gate.set()
        await tm.wait(10)
    assert peak == 3


async def test_rate_limiter_spaces_out_starts() -> None:
    starts: list[float] = []

    async def mark(ctx: TaskContext) -> None:
        starts.append(asyncio.get_running_loop().time())

    # burst = min(max_workers, max_tasks) = 1, then 20 per second: 4 tasks need >= 3 refills (0.15 s).
    async with TaskManager(max_workers=1, max_tasks=10, tasks_per_second=20) as tm:
        for _ in range(4):
            await tm.register_task(Task(mark))
        await tm.wait(10)
    assert len(starts) == 4
    assert starts[-1] - starts[0] >= 0.14


async def test_manager_can_be_started_explicitly_and_defaults_exist() -> None:
    tm = TaskManager.with_defaults()
    assert tm.max_workers >= 1
    await tm.start()
    await tm.start()  # idempotent
    task_id = await tm.register_task(Task(noop))
    await tm.wait(10)
    assert tm.get_task(task_id).status is TaskStatus.COMPLETED
    await tm.stop_graceful()
    with pytest.raises(ManagerStoppedError):
        await tm.start()


async def test_register_tasks_raises_an_exception_group_and_keeps_the_good_ones() -> None:
    async with manager() as tm:
        good = Task(noop)
        dup = Task(noop, id=good.id)
        bad: Any = "not a task"
        with pytest.raises(ExceptionGroup) as caught:
            await tm.register_tasks(good, dup, bad)
        assert len(caught.value.exceptions) == 2
        assert isinstance(caught.value.exceptions[0], TaskExistsError)
        await tm.wait(10)
        assert good.status is TaskStatus.COMPLETED


async def test_async_context_manager_stops_now_when_the_body_raises() -> None:
    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    task = Task(hang)

    async def body() -> None:
        async with manager() as tm:
            await tm.register_task(task)
            raise RuntimeError("body")

    with pytest.raises(RuntimeError, match="body"):
        await body()
    assert task.status is TaskStatus.CANCELLED


async def test_execute_task_runs_a_task_waiting_in_backoff_at_once() -> None:
    async def fail_first(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first")
        return ctx.attempt

    async with manager(retry_delay=60.0) as tm:
        task = Task(fail_first, retries=1)
        await tm.register_task(task)
        await until(lambda: task.status is TaskStatus.RETRYING)
        assert await tm.execute_task(task.id) == 2
        assert task.status is TaskStatus.COMPLETED


async def test_cancel_all_cancels_every_unfinished_task() -> None:
    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    async with manager(max_workers=1) as tm:
        done = Task(noop)
        await tm.register_task(done)
        await tm.wait(10)
        running, queued, delayed = Task(hang), Task(hang), Task(hang)
        await tm.register_tasks(running, queued)
        await tm.register_task_after(delayed, 60)
        await until(lambda: tm.metrics().running == 1)  # one of the two (equal priority: id order)
        await tm.cancel_all()
        await tm.wait(10)
    assert done.status is TaskStatus.COMPLETED
    assert {running.status, queued.status, delayed.status} == {TaskStatus.CANCELLED}


async def test_tasks_registered_before_start_run_once_started() -> None:
    tm = manager()
    early = Task(noop)
    delayed = Task(noop)
    await tm.register_task(early)
    await tm.register_task_after(delayed, 0.01)
    assert tm.get_task(early.id).status is TaskStatus.QUEUED
    async with tm:
        await tm.wait(10)
    assert early.status is TaskStatus.COMPLETED
    assert delayed.status is TaskStatus.COMPLETED


async def test_concurrent_stop_now_calls_all_return_after_the_workers_exited() -> None:
    started = threading.Event()

    def poll(ctx: TaskContext) -> None:
        started.set()
        ctx.cancelled.wait(10)

    tm = manager()
    await tm.start()
    await tm.register_task(Task(poll))
    await until(started.is_set)
    await asyncio.gather(tm.stop_now(), tm.stop_now(), tm.stop_graceful())
    assert tm.metrics().running == 0
    assert not tm.running


async def test_metrics_latency_after_one_task() -> None:
    async def short(ctx: TaskContext) -> None:
        await asyncio.sleep(0.01)

    async with manager() as tm:
        await tm.register_task(Task(short))
        await tm.wait(10)
        metrics = tm.metrics()
    assert metrics.latency_count == 1
    assert metrics.latency_max >= 0.009
    assert metrics.latency_total == metrics.latency_max
    assert metrics.queue_depth == 0
    assert (metrics.scheduled, metrics.completed, metrics.running) == (1, 1, 0)
