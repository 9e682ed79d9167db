"""In-process schedules: go-worker's cron test, registration errors, factories that fail, pause, trigger, stop."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from core_helpers import GUARD, until
from worker_core import (
    ConfigurationError,
    DurableOnlyError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    ScheduleSpecError,
    Task,
    TaskContext,
    TaskManager,
    define_task,
)
from worker_core.durable import DurableHandlerSpec
from worker_core.schedules import META_SCHEDULE_DURABLE, META_SCHEDULE_NAME, META_SCHEDULE_QUEUE, META_SCHEDULE_SPEC


class Boom(BaseException):
    """Not an Exception: a factory raising it must not take the scheduler down."""


async def test_cron_task_runs_within_3s() -> None:
    """go-worker's TestCronTaskRuns: a ``*/1 * * * * *`` schedule fires within 3 s."""
    ran = asyncio.Event()
    seen: list[dict[str, str]] = []

    async def job(ctx: TaskContext) -> None:
        seen.append(dict(ctx.task.metadata or {}))
        ran.set()

    async with TaskManager() as tm:
        tm.register_cron_task("every-second", "*/1 * * * * *", lambda: Task(job, queue="crons"))
        async with asyncio.timeout(3):
            await ran.wait()
    assert seen[0][META_SCHEDULE_NAME] == "every-second"
    assert seen[0][META_SCHEDULE_SPEC] == "*/1 * * * * *"
    assert seen[0][META_SCHEDULE_DURABLE] == "false"
    assert seen[0][META_SCHEDULE_QUEUE] == "crons"


async def test_registration_errors_are_typed() -> None:
    tm = TaskManager()
    tm.register_cron_task("a", "@hourly", lambda: Task(lambda ctx: None))
    with pytest.raises(ScheduleExistsError, match="already registered"):
        tm.register_cron_task("a", "@daily", lambda: Task(lambda ctx: None))
    with pytest.raises(ScheduleSpecError):
        tm.register_cron_task("b", "every tuesday", lambda: Task(lambda ctx: None))
    with pytest.raises(ScheduleSpecError):
        tm.register_cron_task("b", "@hourly", lambda: Task(lambda ctx: None), tz="Nowhere/Special")
    with pytest.raises(ConfigurationError):
        tm.register_cron_task("", "@hourly", lambda: Task(lambda ctx: None))
    with pytest.raises(ConfigurationError):
        tm.register_cron_task("c", "@hourly", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="durable backend not configured"):
        tm.register_durable_cron_task("d", "@hourly", lambda: None)
    assert tm.unregister_cron_task("a") is True
    assert tm.unregister_cron_task("a") is False
    with pytest.raises(ScheduleNotFoundError):
        await tm.pause_schedule("a")


def test_register_cron_task_on_a_durable_manager_says_which_to_use() -> None:
    tm = TaskManager(durable_backend="memory://", durable_handlers={"h": DurableHandlerSpec(None, lambda c, p: None)})
    with pytest.raises(DurableOnlyError, match="use register_durable_cron_task"):
        tm.register_cron_task("a", "@hourly", lambda: Task(lambda ctx: None))
    with pytest.raises(ConfigurationError, match="missed"):
        tm.register_durable_cron_task("a", "@hourly", lambda: None, missed="twice")  # type: ignore[arg-type]


async def test_failing_factories_are_counted_and_never_stop_the_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    healthy = asyncio.Event()
    calls = {"raises": 0, "base": 0, "wrong": 0}

    def raises() -> Task[Any]:
        calls["raises"] += 1
        raise RuntimeError("factory broke")

    def base() -> Task[Any]:
        calls["base"] += 1
        raise Boom

    def wrong() -> Any:
        calls["wrong"] += 1
        return "not a task"

    async def fine() -> Task[None]:  # an async factory
        return Task(lambda ctx: healthy.set())

    caplog.set_level(logging.ERROR, "worker_core.schedules")
    async with TaskManager() as tm:
        tm.register_cron_task("raises", "* * * * * *", raises)
        tm.register_cron_task("base", "* * * * * *", base)
        tm.register_cron_task("wrong", "* * * * * *", wrong)
        await until(lambda: min(calls.values()) >= 2, GUARD)  # each failed at least twice: the loop lives on
        tm.register_cron_task("fine", "* * * * * *", fine)
        async with asyncio.timeout(GUARD):
            await healthy.wait()
        infos = {info.name: info for info in await tm.schedules()}
    for name in ("raises", "base", "wrong"):
        assert infos[name].last_outcome == "failed"
        assert infos[name].skipped >= 2
        assert infos[name].fired == 0
    assert "RuntimeError: factory broke" in infos["raises"].last_error
    assert infos["base"].last_error == "Boom"
    assert "not a Task" in infos["wrong"].last_error
    assert infos["fine"].fired >= 1
    assert "factory broke" in caplog.text


async def test_pause_resume_and_trigger() -> None:
    runs: list[str] = []
    ran = asyncio.Event()

    def job(ctx: TaskContext) -> None:
        runs.append((ctx.task.metadata or {}).get("worker.schedule.manual", "tick"))
        ran.set()

    async with TaskManager() as tm:
        tm.register_cron_task("yearly", "@yearly", lambda: Task(job))
        await tm.trigger_schedule("yearly")  # no tick for months: only the run asked for
        async with asyncio.timeout(GUARD):
            await ran.wait()
        assert runs == ["1"]
        tm.register_cron_task("fast", "* * * * * *", lambda: Task(job))
        await tm.pause_schedule("fast")
        await until(lambda: tm_skipped(tm), GUARD)
        assert runs == ["1"]
        info = {i.name: i for i in await tm.schedules()}["fast"]
        assert info.paused is True
        assert info.last_outcome == "skipped"
        ran.clear()
        await tm.resume_schedule("fast")
        async with asyncio.timeout(GUARD):
            await ran.wait()
        events = await tm.schedule_events("fast")
    assert events[0].kind == "fired"
    assert any(e.error == "paused" for e in events)


def tm_skipped(tm: TaskManager) -> bool:
    entry = tm._engine.schedules.entry("fast")
    return entry.skipped >= 1


async def test_a_tick_while_the_manager_drains_is_skipped() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def long(ctx: TaskContext) -> None:
        started.set()
        await release.wait()

    tm = TaskManager()
    await tm.start()
    await tm.register_task(Task(long))
    await started.wait()
    tm.register_cron_task("tick", "* * * * * *", lambda: Task(lambda ctx: None))
    stop = asyncio.create_task(tm.stop_graceful())
    try:
        await until(lambda: tm_skipped_named(tm, "tick"), GUARD)
        events = await tm.schedule_events("tick")
        assert events[0].kind == "skipped"
        assert "not accepting" in events[0].error
        assert all(e.kind == "skipped" for e in events)
    finally:
        release.set()
        await stop


def tm_skipped_named(tm: TaskManager, name: str) -> bool:
    return tm._engine.schedules.entry(name).skipped >= 1


async def test_decorators_on_a_definition_and_a_plain_function() -> None:
    done: asyncio.Queue[str] = asyncio.Queue()

    @define_task(queue="reports", name="nightly-report")
    async def report() -> None:
        await done.put("report")

    async with TaskManager() as tm:
        assert tm.every(timedelta(seconds=1))(report) is report

        @tm.cron("* * * * * *", name="ping")
        def ping() -> None:
            done.put_nowait("ping")

        got: set[str] = set()
        async with asyncio.timeout(GUARD):
            while got != {"report", "ping"}:
                got.add(await done.get())
        infos = {i.name: i for i in await tm.schedules(upcoming=2)}
    assert set(infos) == {"nightly-report", "ping"}
    assert infos["nightly-report"].queue == "reports"
    assert len(infos["nightly-report"].next_runs) == 2
    await report()  # the declaration is unchanged: calling it calls the function
    assert done.get_nowait() in {"report", "ping"}
    with pytest.raises(ScheduleSpecError):
        TaskManager().every(timedelta(milliseconds=10))(ping)


async def test_unregistered_schedule_stops_firing() -> None:
    fired: list[int] = []
    again = asyncio.Event()

    def job(ctx: TaskContext) -> None:
        fired.append(1)
        again.set()

    async with TaskManager() as tm:
        tm.register_cron_task("once", "* * * * * *", lambda: Task(job))
        async with asyncio.timeout(GUARD):
            await again.wait()
        assert tm.unregister_cron_task("once")
        count = len(fired)
        tm.register_cron_task("other", "* * * * * *", lambda: Task(lambda ctx: again.set()))
        again.clear()
        async with asyncio.timeout(GUARD):
            await again.wait()  # a later tick of another schedule fired: "once" had its chance
            await tm.wait()
        assert len(fired) == count
        assert [i.name for i in await tm.schedules()] == ["other"]
