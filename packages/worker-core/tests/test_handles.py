"""Task handles, submit, per-call options, task definitions and current_context, through the public API."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from core_helpers import GUARD, manager
from worker_core import (
    ConfigurationError,
    InvalidTaskError,
    ManagerStoppedError,
    NotInTaskError,
    PartialRegistrationError,
    Task,
    TaskCancelledError,
    TaskContext,
    TaskHandle,
    TaskNotFoundError,
    TaskStatus,
    TaskTimeoutError,
    current_context,
    define_task,
)


async def add(a: int, b: int = 0) -> int:
    return a + b


def multiply(a: int, b: int) -> int:
    return a * b


class Boom(Exception):
    pass


async def boom(message: str) -> None:
    raise Boom(message)


async def test_submit_runs_an_async_function_with_its_arguments() -> None:
    async with manager() as tm:
        handle = await tm.submit(add, 2, b=40)
        assert isinstance(handle, TaskHandle)
        async with asyncio.timeout(GUARD):
            assert await handle == 42
        assert handle.done()
        assert handle.status is TaskStatus.COMPLETED
        assert tm.get_task(handle.id).name == "add"


async def test_a_function_changing_its_own_keyword_arguments_changes_no_other_call_or_attempt() -> None:
    seen: list[dict[str, Any]] = []

    async def grab(**kw: Any) -> None:
        seen.append(dict(kw))
        kw["added"] = True  # a fresh dict each call: neither this task's next attempt nor another task sees it
        if len(seen) == 1:
            raise Boom("once more")

    def grab_plain(**kw: Any) -> None:
        seen.append(dict(kw))
        kw["added"] = True

    async with manager() as tm:
        retried = await tm.with_options(retries=1, retry_delay=0.001).submit(grab, a=1)
        async with asyncio.timeout(GUARD):
            await retried
            await (await tm.submit(grab))  # no keyword arguments: they share one empty mapping, never changed
            await (await tm.submit(grab_plain))
            await (await tm.submit(grab, b=2))
    assert seen == [{"a": 1}, {"a": 1}, {}, {}, {"b": 2}]


class Account:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def deposit(self, amount: int) -> int:
        self.seen.append("async")
        return amount + 1

    def withdraw(self, amount: int) -> int:
        self.seen.append(threading.current_thread().name)
        return amount - 1

    def history(self) -> Any:
        yield from self.seen


async def test_submit_runs_bound_methods_async_and_plain_and_refuses_a_generator_method() -> None:
    account = Account()
    async with manager() as tm:
        async with asyncio.timeout(GUARD):
            assert await (await tm.submit(account.deposit, 41)) == 42
            assert await (await tm.submit(account.withdraw, 43)) == 42
        with pytest.raises(InvalidTaskError, match="a generator function"):
            await tm.submit(account.history)
    assert account.seen[0] == "async"
    assert account.seen[1] != threading.current_thread().name  # the plain method ran in the thread pool


async def test_submit_runs_partials_of_functions_and_methods_async_in_the_loop_and_plain_in_a_thread() -> None:
    account = Account()

    async def scaled(a: int, factor: int) -> tuple[int, str]:
        return a * factor, threading.current_thread().name

    def plain(a: int, b: int) -> str:
        return threading.current_thread().name

    async with manager() as tm:
        async with asyncio.timeout(GUARD):
            assert await (await tm.submit(functools.partial(scaled, factor=3), 14)) == (
                42,
                threading.current_thread().name,
            )
            assert await (await tm.submit(functools.partial(functools.partial(account.deposit), 41))) == 42
            assert await (await tm.submit(functools.partial(plain, 1), 2)) != threading.current_thread().name
        with pytest.raises(InvalidTaskError, match="a generator function"):
            await tm.submit(functools.partial(account.history))
    assert account.seen == ["async"]


async def test_submit_runs_a_plain_function_in_a_thread() -> None:
    seen: list[str] = []

    def where(a: int) -> int:
        seen.append(threading.current_thread().name)
        return a

    async with manager() as tm:
        handle = await tm.submit(where, 7)
        async with asyncio.timeout(GUARD):
            assert await handle.result() == 7
    assert len(seen) == 1
    assert seen[0] != threading.current_thread().name


async def test_a_handle_never_misses_a_task_that_already_finished() -> None:
    async with manager() as tm:
        handles = [await tm.submit(add, i) for i in range(8)]
        await tm.wait(GUARD)  # every task is done before any handle is awaited
        assert [await h for h in handles] == list(range(8))
        assert [await tm.handle(h.id) for h in handles] == list(range(8))


async def test_awaiting_a_failed_task_raises_its_error() -> None:
    async with manager(max_retries=0) as tm:
        handle = await tm.submit(boom, "no luck")
        async with asyncio.timeout(GUARD):
            with pytest.raises(Boom, match="no luck"):
                await handle
        assert handle.status is TaskStatus.FAILED


async def test_a_result_timeout_is_a_plain_timeout_and_the_task_goes_on() -> None:
    gate = asyncio.Event()

    async def blocked() -> str:
        await gate.wait()
        return "done"

    async with manager() as tm:
        handle = await tm.submit(blocked)
        with pytest.raises(TimeoutError) as caught:
            await handle.result(timeout=0.01)
        assert not isinstance(caught.value, TaskTimeoutError)
        assert not handle.done()
        gate.set()
        async with asyncio.timeout(GUARD):
            assert await handle.result(timeout=timedelta(seconds=GUARD)) == "done"


async def test_a_result_timeout_of_zero_answers_now_as_a_future_does() -> None:
    gate = asyncio.Event()

    async def blocked() -> str:
        await gate.wait()
        return "done"

    async def broken() -> None:
        raise ValueError("no")

    async with manager() as tm:
        handle = await tm.submit(blocked)
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0)  # not finished: at once, and the task goes on
        assert not handle.done()
        gate.set()
        failing = await tm.submit(broken)
        async with asyncio.timeout(GUARD):
            await tm.wait()
        assert await handle.result(timeout=0) == "done"
        assert await handle.result(timeout=timedelta(0)) == "done"
        with pytest.raises(ValueError, match="no"):
            await failing.result(timeout=0)
        with pytest.raises(ConfigurationError, match="timeout"):
            await handle.result(timeout=-1)


async def test_cancel_through_the_handle() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    async with manager() as tm:
        handle = await tm.submit(forever)
        async with asyncio.timeout(GUARD):
            await started.wait()
            assert await handle.cancel() is True
            with pytest.raises(TaskCancelledError):
                await handle
        assert handle.status is TaskStatus.CANCELLED
        assert await handle.cancel() is False  # already finished


async def test_a_task_timeout_raises_task_timeout_error() -> None:
    async def slow() -> None:
        await asyncio.Event().wait()

    async with manager() as tm:
        handle = await tm.with_options(timeout=0.01).submit(slow)
        async with asyncio.timeout(GUARD):
            with pytest.raises(TaskTimeoutError):
                await handle
        assert handle.status is TaskStatus.DEADLINE_EXCEEDED


async def test_many_waiters_on_one_task_and_a_cancelled_waiter() -> None:
    gate = asyncio.Event()

    async def blocked() -> int:
        await gate.wait()
        return 5

    async with manager() as tm:
        handle = await tm.submit(blocked)
        waiters = [asyncio.create_task(handle.result()) for _ in range(5)]
        await asyncio.sleep(0)  # let every waiter reach its wait
        waiters[0].cancel()
        gate.set()
        async with asyncio.timeout(GUARD):
            outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert isinstance(outcomes[0], asyncio.CancelledError)
        assert outcomes[1:] == [5, 5, 5, 5]


async def test_timed_out_waits_leave_nothing_behind() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async with manager() as tm:
        handle = await tm.submit(forever)
        for _ in range(200):
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.0001)
        assert tm._engine.bus._watchers == {}  # white box: no waiter future is kept per timed-out wait
        await handle.cancel()


async def test_a_manager_stopping_ends_every_wait() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    tm = manager()
    await tm.start()
    running = await tm.submit(forever)
    delayed = await tm.with_options(delay=3600).submit(add, 1)
    waits = [asyncio.create_task(running.result()), asyncio.create_task(delayed.result())]
    await asyncio.sleep(0)
    async with asyncio.timeout(GUARD):
        await tm.stop_now()
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, TaskCancelledError | ManagerStoppedError), outcome


async def test_per_call_options_do_not_collide_with_the_functions_own_keywords() -> None:
    async def echo(*, priority: str, queue: str, timeout: str) -> tuple[str, str, str]:  # noqa: ASYNC109
        return priority, queue, timeout

    async with manager() as tm:
        handle = await tm.with_options(priority=3, queue="q", name="echo-task").submit(
            echo, priority="p", queue="mine", timeout="t"
        )
        task = tm.get_task(handle.id)
        assert (task.priority, task.queue, task.name) == (3, "q", "echo-task")
        async with asyncio.timeout(GUARD):
            assert await handle == ("p", "mine", "t")


async def test_options_retries_and_an_id() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom("again")
        return calls

    chosen = uuid.uuid4()
    async with manager() as tm:
        handle = await tm.with_options(retries=2, retry_delay=0.001).with_options(id=chosen).submit(flaky)
        assert handle.id == chosen
        async with asyncio.timeout(GUARD):
            assert await handle == 3
        assert tm.get_task(chosen).attempts == 3


async def test_bad_options_are_typed_errors() -> None:
    async with manager() as tm:
        with pytest.raises(TypeError, match="unknown task option"):
            tm.with_options(prio=1)  # type: ignore[call-arg]
        with pytest.raises(InvalidTaskError):
            tm.with_options(priority="high")  # type: ignore[arg-type]
        with pytest.raises(InvalidTaskError, match="run_at or delay"):
            await tm.with_options(run_at=datetime.now(UTC), delay=1).submit(add, 1)
        with pytest.raises(InvalidTaskError):
            await tm.submit(42)  # type: ignore[call-overload]
        assert tm.get_tasks() == []  # nothing was registered


async def test_delay_and_run_at_options_postpone_the_start() -> None:
    async with manager() as tm:
        later = await tm.with_options(delay=timedelta(hours=1)).submit(add, 1)
        at = await tm.with_options(run_at=datetime.now(UTC) + timedelta(hours=1)).submit(add, 2)
        for handle in (later, at):
            assert tm.get_task(handle.id).run_at is not None
            assert handle.status is TaskStatus.QUEUED
            await handle.cancel()


async def test_handle_of_an_unknown_id() -> None:
    async with manager() as tm:
        with pytest.raises(TaskNotFoundError):
            tm.handle(uuid.uuid4())


async def test_handle_of_a_registered_task_and_execute_task_with_a_handle() -> None:
    async def answer(ctx: TaskContext) -> int:
        return 42

    async with manager() as tm:
        tm.set_max_workers(0)  # nothing dispatches: execute_task runs it
        task = Task(answer)
        handle: TaskHandle[int] = tm.handle(await tm.register_task(task))
        async with asyncio.timeout(GUARD):
            assert await tm.execute_task(handle) == 42
            assert await handle == 42


async def test_current_context_in_every_kind_of_task_code() -> None:
    seen: list[tuple[uuid.UUID, int]] = []

    async def child() -> None:
        ctx = current_context()
        seen.append((ctx.task_id, ctx.attempt))

    async def parent() -> uuid.UUID:
        ctx = current_context()
        seen.append((ctx.task_id, ctx.attempt))
        await asyncio.create_task(child())  # a child task inherits the attempt's context
        return ctx.task_id

    def in_thread() -> uuid.UUID:
        ctx = current_context()
        seen.append((ctx.task_id, ctx.attempt))
        return ctx.task_id

    async with manager() as tm:
        first = await tm.submit(parent)
        second = await tm.submit(in_thread)
        async with asyncio.timeout(GUARD):
            assert await first == first.id
            assert await second == second.id
    assert sorted(seen) == sorted([(first.id, 1), (first.id, 1), (second.id, 1)])
    with pytest.raises(NotInTaskError):
        current_context()


@define_task(retries=0, queue="emails", priority=2)
async def send(to: str, *, subject: str = "") -> str:
    return f"{to}:{subject}"


@define_task
def square(x: int) -> int:
    return x * x


async def test_define_task_declares_defaults_once() -> None:
    assert await send("a@b", subject="direct") == "a@b:direct"  # a direct call runs the function, no task
    assert send.__name__ == "send"
    async with manager() as tm:
        handle = await tm.submit(send, "a@b", subject="hi")
        task = tm.get_task(handle.id)
        assert (task.queue, task.priority, task.retries, task.name) == ("emails", 2, 0, "send")
        override = await tm.with_options(priority=0).submit(send, "c@d")
        assert tm.get_task(override.id).priority == 0
        assert tm.get_task(override.id).queue == "emails"
        squared = await tm.submit(square, 9)
        async with asyncio.timeout(GUARD):
            assert (await handle, await override, await squared) == ("a@b:hi", "c@d:", 81)


def test_define_task_checks_its_options_at_once() -> None:
    with pytest.raises(TypeError, match="unknown task option"):
        define_task(retry=3)  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError):
        define_task(retries=-1)
    with pytest.raises(InvalidTaskError):
        define_task(42)  # type: ignore[call-overload]


async def test_register_tasks_reports_the_accepted_ids() -> None:
    async def noop(ctx: TaskContext) -> None:
        return None

    async with manager() as tm:
        tm.set_max_workers(0)
        good = [Task(noop), Task(noop)]
        bad = Task(noop, retries=99)
        with pytest.raises(PartialRegistrationError) as caught:
            await tm.register_tasks(good[0], bad, good[1])
        assert caught.value.accepted == [good[0].id, good[1].id]
        assert len(caught.value.exceptions) == 1
        assert isinstance(caught.value.exceptions[0], InvalidTaskError)
        assert {t.id for t in tm.get_tasks()} == {good[0].id, good[1].id}
        with pytest.raises(PartialRegistrationError) as again:
            await tm.register_tasks(Task(noop, retries=99))
        matched, rest = again.value.split(InvalidTaskError)  # what except* InvalidTaskError does
        assert isinstance(matched, PartialRegistrationError)
        assert matched.accepted == []
        assert rest is None
        await tm.cancel_all()  # with no worker the queued tasks would never finish


class InjectingTracer:
    def inject(self, metadata: MutableMapping[str, str]) -> None:
        metadata["traceparent"] = "00-abc"

    def start(self, task: Task[Any], ctx: TaskContext) -> InjectingTracer:
        return self

    def end(self, error: BaseException | None) -> None:
        return None


async def test_the_tracer_never_changes_the_callers_metadata() -> None:
    async def noop(ctx: TaskContext) -> None:
        return None

    mine = {"tenant": "a"}
    async with manager() as tm:
        tm.set_tracer(InjectingTracer())
        task = Task(noop, metadata=mine)
        await tm.register_task(task)
        handle = await tm.with_options(metadata=mine).submit(add, 1)
        async with asyncio.timeout(GUARD):
            await handle
        await tm.wait(GUARD)
        assert tm.get_task(handle.id).metadata == {"tenant": "a", "traceparent": "00-abc"}
    assert mine == {"tenant": "a"}
    assert task.metadata == {"tenant": "a", "traceparent": "00-abc"}


async def test_tasks_of_one_submitter_never_share_a_metadata_dict() -> None:
    async def tag(value: str) -> dict[str, str]:
        metadata = current_context().metadata
        metadata["seen"] = value
        return dict(metadata)

    async with manager() as tm:
        tagged = tm.with_options(metadata={"tenant": "a"})
        first, second = await tagged.submit(tag, "1"), await tagged.submit(tag, "2")
        async with asyncio.timeout(GUARD):
            assert await first == {"tenant": "a", "seen": "1"}
            assert await second == {"tenant": "a", "seen": "2"}
        assert tm.get_task(first.id).metadata == {"tenant": "a", "seen": "1"}
