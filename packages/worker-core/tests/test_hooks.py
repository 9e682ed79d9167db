from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import MutableMapping
from typing import Any

import pytest
from core_helpers import manager, until
from worker_core import ConfigurationError, Task, TaskContext, TaskHooks, TaskStatus, retry_jitter

CURRENT_SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("current_span", default="none")


async def noop(ctx: TaskContext) -> None:
    return None


async def test_each_hook_fires_once_for_one_successful_task() -> None:
    calls: list[str] = []
    hooks = TaskHooks(
        on_queued=lambda task: calls.append("queued"),
        on_start=lambda task: calls.append("start"),
        on_finish=lambda task, status, result, error: calls.append(f"finish:{status.value}"),
        on_retry=lambda task, delay, attempt: calls.append("retry"),
    )
    async with manager() as tm:
        tm.set_hooks(hooks)
        await tm.register_task(Task(noop))
        await tm.wait(10)
    assert calls == ["queued", "start", "finish:completed"]


async def test_retry_hook_fires_once_and_async_hooks_are_awaited() -> None:
    retries: list[tuple[float, int]] = []
    finished = asyncio.Event()

    async def on_retry(task: Task[Any], delay: float, attempt: int) -> None:
        await asyncio.sleep(0)
        retries.append((delay, attempt))

    async def on_finish(task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None) -> None:
        await asyncio.sleep(0)
        finished.set()

    async def fail_once(ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first")
        return "ok"

    async with manager() as tm:
        tm.set_hooks(TaskHooks(on_retry=on_retry, on_finish=on_finish))
        task = Task(fail_once, retries=1, retry_delay=0.01)
        await tm.register_task(task)
        await tm.wait(10)
        assert finished.is_set()  # wait() returns only after on_finish completed
    assert task.result == "ok"
    assert len(retries) == 1
    delay, attempt = retries[0]
    assert attempt == 1
    assert 0.009 <= delay <= 0.011


async def test_hook_exceptions_are_logged_never_propagated(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("hook bug")

    async with manager() as tm:
        tm.set_hooks(TaskHooks(on_queued=broken, on_start=broken, on_finish=broken))
        with caplog.at_level(logging.ERROR, logger="worker_core.hooks"):
            task_id = await tm.register_task(Task(noop))
            await tm.wait(10)
        assert tm.get_task(task_id).status is TaskStatus.COMPLETED
    assert sum("hook" in r.getMessage() for r in caplog.records) == 3


async def test_set_hooks_rejects_other_objects() -> None:
    async with manager() as tm:
        bad: Any = {"on_start": print}
        with pytest.raises(ConfigurationError):
            tm.set_hooks(bad)


class RecordingSpan:
    def __init__(self, tracer: RecordingTracer, token: contextvars.Token[str]) -> None:
        self.tracer = tracer
        self.token = token

    def end(self, error: BaseException | None) -> None:
        CURRENT_SPAN.reset(self.token)  # must run in the context start() ran in
        self.tracer.ended.append(error)


class RecordingTracer:
    def __init__(self) -> None:
        self.ended: list[BaseException | None] = []
        self.injected = 0

    def start(self, task: Task[Any], ctx: TaskContext) -> RecordingSpan:
        return RecordingSpan(self, CURRENT_SPAN.set(f"span-{ctx.attempt}-{ctx.metadata.get('traceparent')}"))

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        self.injected += 1
        metadata["traceparent"] = "caller"


async def test_tracer_span_per_attempt_sees_the_error_and_sets_context_for_the_task() -> None:
    seen: list[str] = []
    error = ValueError("traced failure")

    async def async_task(ctx: TaskContext) -> None:
        seen.append(CURRENT_SPAN.get())
        if ctx.attempt == 1:
            raise error

    def sync_task(ctx: TaskContext) -> None:
        seen.append(CURRENT_SPAN.get())

    tracer = RecordingTracer()
    async with manager() as tm:
        tm.set_tracer(tracer)
        first = Task(async_task, retries=1)
        await tm.register_task(first)
        await tm.wait(10)
        await tm.register_task(Task(sync_task))
        await tm.wait(10)
    assert first.status is TaskStatus.COMPLETED
    assert tracer.injected == 2
    assert tracer.ended == [error, None, None]
    assert seen == ["span-1-caller", "span-2-caller", "span-1-caller"]
    assert CURRENT_SPAN.get() == "none"  # nothing leaked into the caller's context


async def test_tracer_timeout_and_cancel_still_end_the_span() -> None:
    tracer = RecordingTracer()

    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    async with manager(max_retries=0) as tm:
        tm.set_tracer(tracer)
        task = Task(hang, timeout=0.02)
        await tm.register_task(task)
        await tm.wait(10)
    assert task.status is TaskStatus.DEADLINE_EXCEEDED
    assert len(tracer.ended) == 1
    assert isinstance(tracer.ended[0], asyncio.CancelledError)


async def test_cancel_task_interrupts_a_running_traced_async_task_at_once_and_its_span_ends() -> None:
    tracer = RecordingTracer()
    started = asyncio.Event()
    seen: list[str] = []

    async def hang(ctx: TaskContext) -> None:
        seen.append(CURRENT_SPAN.get())
        started.set()
        await asyncio.Event().wait()

    async def after(ctx: TaskContext) -> str:
        return CURRENT_SPAN.get()

    async with manager(max_workers=1, max_retries=0) as tm:
        tm.set_tracer(tracer)
        hung = Task(hang)
        await tm.register_task(hung)
        await asyncio.wait_for(started.wait(), 10)
        await tm.cancel_task(hung.id)
        await tm.wait(10)
        assert hung.status is TaskStatus.CANCELLED
        assert len(tracer.ended) == 1
        assert isinstance(tracer.ended[0], asyncio.CancelledError)
        next_task = Task(after)
        await tm.register_task(next_task)  # same worker: the first span's context was restored by end()
        await tm.wait(10)
    assert seen == ["span-1-caller"]
    assert next_task.result == "span-1-caller"
    assert tracer.ended[1] is None


async def test_cancelling_the_awaiter_of_a_traced_sync_task_ends_its_span_with_the_cancellation() -> None:
    tracer = RecordingTracer()
    running = threading.Event()
    seen: list[str] = []

    def block(ctx: TaskContext) -> None:
        seen.append(CURRENT_SPAN.get())
        running.set()
        ctx.cancelled.wait(10)  # returns as soon as the attempt is cancelled

    async with manager(max_retries=0) as tm:
        tm.set_tracer(tracer)
        tm.set_max_workers(0)  # the task waits: execute_task runs it in the caller's asyncio task
        task = Task(block)
        await tm.register_task(task)
        caller = asyncio.create_task(tm.execute_task(task.id))
        await until(running.is_set)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await until(lambda: len(tracer.ended) == 1)  # once the function returned (it saw ctx.cancelled)
        assert len(tracer.ended) == 1
        assert isinstance(tracer.ended[0], asyncio.CancelledError)
        await tm.wait(10)  # the abandoned task is finished, not left RUNNING
        assert task.status is TaskStatus.CANCELLED
    assert seen == ["span-1-caller"]
    assert CURRENT_SPAN.get() == "none"


async def test_set_tracer_rejects_objects_without_the_protocol() -> None:
    async with manager() as tm:
        bad: Any = object()
        with pytest.raises(ConfigurationError):
            tm.set_tracer(bad)
        tm.set_tracer(None)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_scheduled(self, task: Task[Any]) -> None:
        self.events.append(("scheduled",))

    def on_start(self, task: Task[Any]) -> None:
        self.events.append(("start",))

    def on_finish(self, task: Task[Any], status: TaskStatus, latency_s: float | None) -> None:
        self.events.append(("finish", status, latency_s is not None))

    def on_retry(self, task: Task[Any], delay_s: float, attempt: int) -> None:
        self.events.append(("retry", attempt))

    def on_result_dropped(self, count: int) -> None:
        self.events.append(("dropped", count))


async def test_instrumentation_receives_every_event_until_removed() -> None:
    async def fail_once(ctx: TaskContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("x")

    recorder = Recorder()
    async with manager() as tm:
        tm.add_instrumentation(recorder)
        results = tm.subscribe_results(1)
        await tm.register_task(Task(fail_once, retries=1))
        await tm.wait(10)
        queued = Task(noop)
        tm.set_max_workers(0)
        await tm.register_task(queued)
        await tm.cancel_task(queued.id)
        tm.remove_instrumentation(recorder)
        await tm.register_task(Task(noop))
        tm.set_max_workers(1)
        await tm.wait(10)
        results.close()
    assert recorder.events == [
        ("scheduled",),
        ("start",),
        ("retry", 1),
        ("start",),
        ("finish", TaskStatus.COMPLETED, True),
        ("scheduled",),
        ("dropped", 1),  # the result is published before on_finish
        ("finish", TaskStatus.CANCELLED, False),
    ]


async def test_retry_attempt_numbers_and_delays_follow_the_retries() -> None:
    seen: list[tuple[float, int]] = []

    async def fail(ctx: TaskContext) -> None:
        raise RuntimeError("again")

    async with manager(max_retries=2, retry_delay=0.001) as tm:
        tm.set_hooks(TaskHooks(on_retry=lambda task, delay, attempt: seen.append((delay, attempt))))
        task = Task(fail, retries=2)
        await tm.register_task(task)
        await tm.wait(10)
    assert [attempt for _, attempt in seen] == [1, 2]
    assert [delay for delay, _ in seen] == [retry_jitter(0.001, task.id, 1), retry_jitter(0.002, task.id, 2)]
