"""Each attempt runs isolated: its own asyncio task and its own copy of the context variables.

Whatever an attempt raises (a stray CancelledError, a BaseException, SystemExit), whatever it leaves in a
ContextVar, and whatever a hook or a tracer does, the task ends with its own outcome and the manager goes on.
Tests whose failure could throw KeyboardInterrupt or SystemExit out of the event loop run in a loop of their
own (``run_in_fresh_loop``), so that a bug fails the test instead of interrupting the whole session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import gc
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

import pytest
from core_helpers import GUARD, manager, stop_quietly, until
from worker_core import TERMINAL_STATUSES, Task, TaskContext, TaskHooks, TaskManager, TaskStatus

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("attempt_isolation_var", default="default")
SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("attempt_isolation_span", default="none")


class Boom(BaseException):
    """Not an Exception: what a careless `except Exception` lets through."""


async def noop(ctx: TaskContext) -> None:
    return None


async def answer(ctx: TaskContext) -> int:
    await asyncio.sleep(0)
    return 42


def run_in_fresh_loop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` under ``asyncio.run`` in a thread of its own; what escapes that loop fails the test.

    A KeyboardInterrupt thrown out of the test's own event loop would end the whole session; escaping this
    loop, it reaches only this function, which turns it (or a SystemExit) into a failure.
    """
    escaped: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as exc:  # reported below, in the test's thread
            escaped.append(exc)

    thread = threading.Thread(target=run, name="fresh-loop")
    thread.start()
    thread.join(3 * GUARD)
    assert not thread.is_alive(), "the scenario's event loop did not finish"
    if not escaped:
        collect_garbage()
        return
    exc = escaped.pop()
    if not isinstance(exc, KeyboardInterrupt | SystemExit):
        collect_garbage()
        raise exc
    name = type(exc).__name__
    del exc  # it holds the dead worker: collect that now (see collect_garbage), not while pytest formats
    collect_garbage()
    pytest.fail(f"{name} escaped the event loop instead of failing its task")


def collect_garbage() -> None:
    """Collect a worker killed by an exception now, while nothing else runs.

    Its "Task exception was never retrieved" log formats a traceback, which on CPython 3.11 parses source with
    ``ast``; run from a garbage collection inside pytest's own ``ast.parse`` (formatting a failure), that nested
    parse makes pytest fail with "AST constructor recursion depth mismatch".
    """
    gc.collect()


async def cleanup(tm: TaskManager) -> None:
    await stop_quietly(tm)
    collect_garbage()


async def assert_manager_goes_on(tm: TaskManager, count: int = 3) -> None:
    """More tasks registered now (with max_workers=1: on the same worker) complete, and wait() returns."""
    followers = [Task(noop) for _ in range(count)]
    await tm.register_tasks(*followers)
    await tm.wait()
    assert [t.status for t in followers] == [TaskStatus.COMPLETED] * count


# ------------------------------------------------------------------------------- stray cancellations


async def cancelled_inner_task(raised: list[BaseException]) -> None:
    inner = asyncio.create_task(asyncio.Event().wait())
    await asyncio.sleep(0)  # let the inner task start
    inner.cancel()  # someone else's cancellation, not the manager's
    try:
        await inner
    except asyncio.CancelledError as exc:
        raised.append(exc)
        raise


async def raise_cancelled(raised: list[BaseException]) -> None:
    exc = asyncio.CancelledError()
    raised.append(exc)
    raise exc


@pytest.mark.parametrize("source", [cancelled_inner_task, raise_cancelled], ids=["awaits-cancelled-inner", "raises"])
async def test_a_cancelled_error_raised_by_the_task_itself_fails_it_and_the_manager_goes_on(
    source: Callable[[list[BaseException]], Coroutine[Any, Any, None]],
) -> None:
    raised: list[BaseException] = []

    async def execute(ctx: TaskContext) -> None:
        await source(raised)

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(execute, retries=0)
            await tm.register_task(task)
            await tm.wait(GUARD)
            assert task.status is TaskStatus.FAILED
            assert len(raised) == 1
            assert task.error is raised[0]
            assert isinstance(task.error, asyncio.CancelledError)
            await assert_manager_goes_on(tm)
            await tm.wait(GUARD)
            await tm.stop_graceful(GUARD)
            assert not tm.running
    finally:
        await cleanup(tm)


async def test_a_base_exception_from_an_async_task_fails_it_and_the_worker_goes_on() -> None:
    boom = Boom("not an Exception")

    async def execute(ctx: TaskContext) -> None:
        raise boom

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(execute, retries=0)
            await tm.register_task(task)
            await tm.wait()
            assert task.status is TaskStatus.FAILED
            assert task.error is boom
            await assert_manager_goes_on(tm)
    finally:
        await cleanup(tm)


async def test_a_concurrent_futures_cancelled_error_from_a_plain_function_fails_it() -> None:
    error = concurrent.futures.CancelledError("raised by the function, not a cancellation")

    def execute(ctx: TaskContext) -> None:
        raise error

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(execute, retries=0)
            await tm.register_task(task)
            await tm.wait()
            assert task.status is TaskStatus.FAILED
            assert task.error is error
            await assert_manager_goes_on(tm)
    finally:
        await cleanup(tm)


def exit_three(ctx: TaskContext) -> None:
    sys.exit(3)


def interrupt(ctx: TaskContext) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("execute", "error_type"),
    [(exit_three, SystemExit), (interrupt, KeyboardInterrupt)],
    ids=["sys-exit", "keyboard-interrupt"],
)
def test_system_exit_or_keyboard_interrupt_in_a_plain_function_fails_only_its_task(
    execute: Callable[[TaskContext], None], error_type: type[BaseException]
) -> None:
    outcome: dict[str, Any] = {}

    async def scenario() -> None:
        tm = manager(max_workers=1)
        await tm.start()
        try:
            async with asyncio.timeout(GUARD):
                task = Task(execute, retries=0)
                await tm.register_task(task)
                await tm.wait()
                outcome["status"], outcome["error"] = task.status, task.error
                await assert_manager_goes_on(tm)
                outcome["loop_survived"] = True
        finally:
            await stop_quietly(tm)

    run_in_fresh_loop(scenario)
    assert outcome["status"] is TaskStatus.FAILED
    error = outcome["error"]
    assert isinstance(error, error_type)
    if isinstance(error, SystemExit):
        assert error.code == 3
    assert outcome["loop_survived"] is True


# -------------------------------------------------------------------------------------- contextvars


async def set_var_async(ctx: TaskContext) -> str:
    VAR.set("set by task A")
    return VAR.get()


async def read_var_async(ctx: TaskContext) -> str:
    return VAR.get()


def set_var_plain(ctx: TaskContext) -> str:
    VAR.set("set by task A")
    return VAR.get()


def read_var_plain(ctx: TaskContext) -> str:
    return VAR.get()


@pytest.mark.parametrize(
    ("setter", "reader"),
    [(set_var_async, read_var_async), (set_var_plain, read_var_plain)],
    ids=["async", "plain"],
)
async def test_a_context_variable_set_by_one_task_is_not_seen_by_the_next(
    setter: Callable[[TaskContext], Any], reader: Callable[[TaskContext], Any]
) -> None:
    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            first = Task(setter)
            await tm.register_task(first)
            await tm.wait()
            second = Task(reader)  # registered after the first finished: same worker, next attempt
            await tm.register_task(second)
            await tm.wait()
    finally:
        await cleanup(tm)
    assert first.result == "set by task A"
    assert second.status is TaskStatus.COMPLETED
    assert second.result == "default"
    assert VAR.get() == "default"  # nor in the test's own context


# ------------------------------------------------------------------------------------ ctx.cancelled


async def test_ctx_cancelled_is_false_while_a_plain_function_runs_and_true_once_cancelled() -> None:
    seen: dict[str, Any] = {}
    started = threading.Event()

    def poll(ctx: TaskContext) -> str:
        seen["before"] = bool(ctx.cancelled)
        seen["is_event"] = isinstance(ctx.cancelled, threading.Event)
        seen["wait_before"] = ctx.cancelled.wait(0)
        started.set()
        deadline = time.monotonic() + GUARD
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.005)
        seen["after"] = bool(ctx.cancelled)
        seen["is_set_after"] = ctx.cancelled.is_set()
        seen["wait_after"] = ctx.cancelled.wait(0)
        return "stopped as asked"

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(poll)
            await tm.register_task(task)
            await until(started.is_set)
            await tm.cancel_task(task.id)
            await tm.wait()
    finally:
        await cleanup(tm)
    assert seen["is_event"] is True
    assert seen["before"] is False
    assert seen["wait_before"] is False
    assert seen["after"] is True
    assert seen["is_set_after"] is True
    assert seen["wait_after"] is True
    assert task.status in TERMINAL_STATUSES


async def test_ctx_cancelled_is_false_in_a_running_async_task_and_true_after_cancel_task() -> None:
    seen: dict[str, bool] = {}
    started = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        seen["before"] = bool(ctx.cancelled)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["after"] = bool(ctx.cancelled)
            seen["is_set_after"] = ctx.cancelled.is_set()
            raise

    tm = manager(max_workers=1)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            task = Task(hang)
            await tm.register_task(task)
            await started.wait()
            await tm.cancel_task(task.id)
            await tm.wait()
    finally:
        await cleanup(tm)
    assert seen == {"before": False, "after": True, "is_set_after": True}
    assert task.status is TaskStatus.CANCELLED


# ------------------------------------------------------------------- plain callables returning awaitables


def returns_coroutine(ctx: TaskContext, value: int) -> Coroutine[Any, Any, int]:
    async def later() -> int:
        await asyncio.sleep(0)
        return value

    return later()


@pytest.mark.parametrize(
    "make_execute",
    [lambda: lambda ctx: answer(ctx), lambda: functools.partial(returns_coroutine, value=42)],
    ids=["lambda", "partial"],
)
async def test_a_plain_callable_returning_an_awaitable_completes_with_the_awaited_value(
    make_execute: Callable[[], Callable[[TaskContext], Any]],
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tm = manager(max_workers=1)
        await tm.start()
        try:
            async with asyncio.timeout(GUARD):
                task = Task(make_execute())
                await tm.register_task(task)
                await tm.wait()
        finally:
            await cleanup(tm)
        result = task.result
        if asyncio.iscoroutine(result):
            result.close()  # so that no "never awaited" warning turns up later, in another test
            pytest.fail("the task completed with an un-awaited coroutine as its result")
        assert task.status is TaskStatus.COMPLETED
        assert result == 42
        del task, result
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


# ------------------------------------------------------------------------ hooks raising BaseException


def raise_boom(*args: Any) -> None:
    raise Boom("hook")


def raise_interrupt(*args: Any) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("hook", "raiser"),
    [
        ("on_queued", raise_boom),
        ("on_start", raise_boom),
        ("on_retry", raise_boom),
        ("on_finish", raise_boom),
        ("on_finish", raise_interrupt),
    ],
    ids=["on_queued-boom", "on_start-boom", "on_retry-boom", "on_finish-boom", "on_finish-keyboard-interrupt"],
)
def test_a_hook_raising_a_base_exception_changes_no_outcome(hook: str, raiser: Callable[..., None]) -> None:
    outcome: dict[str, Any] = {}

    async def fail_once(ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails, so that on_retry runs")
        return "ok"

    async def scenario() -> None:
        tm = manager(max_workers=1, retry_delay=0.01)
        tm.set_hooks(TaskHooks(**{hook: raiser}))
        await tm.start()
        try:
            async with asyncio.timeout(GUARD):
                task = Task(fail_once, retries=1)
                await tm.register_task(task)
                await tm.wait()
                outcome["status"], outcome["result"] = task.status, task.result
                await assert_manager_goes_on(tm)
                outcome["manager_went_on"] = True
        except Boom as exc:
            outcome["raised"] = repr(exc)
        finally:
            tm.set_hooks(None)  # the cleanup's own cancellations must not call the broken hook
            await stop_quietly(tm)

    run_in_fresh_loop(scenario)
    assert "raised" not in outcome, f"the {hook} hook's exception reached the caller: {outcome.get('raised')}"
    assert outcome["status"] is TaskStatus.COMPLETED
    assert outcome["result"] == "ok"
    assert outcome["manager_went_on"] is True


# ---------------------------------------------------------------------------------------------- tracer


class LeakySpan:
    def end(self, error: BaseException | None) -> None:
        return None  # does NOT reset SPAN: the runtime's context copy must contain it


class LeakyTracer:
    """Sets SPAN for tasks named "traced" only, and never resets it."""

    def start(self, task: Task[Any], ctx: TaskContext) -> LeakySpan:
        if task.name == "traced":
            SPAN.set(f"span of attempt {ctx.attempt}")
        return LeakySpan()

    def inject(self, metadata: MutableMapping[str, str]) -> None:
        return None


async def read_span_async(ctx: TaskContext) -> str:
    return SPAN.get()


def read_span_plain(ctx: TaskContext) -> str:
    return SPAN.get()


@pytest.mark.parametrize("reader", [read_span_async, read_span_plain], ids=["async", "plain"])
async def test_a_span_context_set_in_start_is_seen_by_its_attempt_and_never_by_the_next(
    reader: Callable[[TaskContext], str],
) -> None:
    tm = manager(max_workers=1)
    tm.set_tracer(LeakyTracer())
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            traced = Task(reader, name="traced")
            await tm.register_task(traced)
            await tm.wait()
            after = Task(reader, name="plain")
            await tm.register_task(after)
            await tm.wait()
    finally:
        await cleanup(tm)
    assert traced.result == "span of attempt 1"
    assert after.status is TaskStatus.COMPLETED
    assert after.result == "none"
    assert SPAN.get() == "none"
