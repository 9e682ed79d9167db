from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

import pytest
from core_helpers import manager
from worker_core import (
    ConfigurationError,
    HandlerRegistrationError,
    InvalidTaskError,
    ManagerStoppedError,
    Task,
    TaskContext,
    TaskExistsError,
    TaskManager,
    TaskNotFoundError,
    TaskStatus,
    define_task,
)
from worker_core.durable import DurableHandlerSpec


async def noop(ctx: TaskContext) -> None:
    return None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_workers": -1},
        {"max_workers": 0},
        {"max_workers": 2.5},
        {"max_tasks": 0},
        {"max_tasks": -5},
        {"tasks_per_second": "fast"},
        {"timeout": -1},
        {"timeout": 0},
        {"timeout": "1s"},
        {"retry_delay": 0},
        {"retry_delay": timedelta(seconds=-1)},
        {"max_retries": -1},
        {"default_queue": ""},
        {"queue_weights": {"a": "heavy"}},
    ],
)
def test_bad_constructor_arguments_raise_configuration_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        TaskManager(**kwargs)


def test_durations_accept_timedelta_and_rate_limit_can_be_off() -> None:
    tm = TaskManager(timeout=timedelta(seconds=2), retry_delay=timedelta(milliseconds=5), tasks_per_second=0)
    assert tm.max_workers >= 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": "high"},
        {"priority": 1.5},
        {"weight": None},
        {"queue": 3},
        {"name": None},
        {"id": "not-a-uuid"},
        {"run_at": "tomorrow"},
        {"retries": -1},
        {"retry_delay": -1},
        {"timeout": "forever"},
        {"metadata": [("a", "b")]},
    ],
)
def test_bad_task_fields_raise_invalid_task_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidTaskError):
        Task(noop, **kwargs)


def test_non_callable_execute_is_rejected() -> None:
    not_callable: Any = 42
    with pytest.raises(InvalidTaskError, match="callable"):
        Task(not_callable)


async def test_bad_registrations_leave_the_manager_working() -> None:
    async with manager() as tm:
        not_a_task: Any = noop
        with pytest.raises(InvalidTaskError):
            await tm.register_task(not_a_task)
        mutated = Task(noop)
        bad_priority: Any = "urgent"
        mutated.priority = bad_priority
        with pytest.raises(InvalidTaskError):
            await tm.register_task(mutated)
        assert mutated.status is TaskStatus.INVALID
        huge = Task(noop, priority=2**70)
        with pytest.raises(InvalidTaskError):
            await tm.register_task(huge)
        good = Task(noop)
        await tm.register_task(good)
        with pytest.raises(TaskExistsError):
            await tm.register_task(good)
        with pytest.raises(TaskExistsError):
            await tm.register_task(Task(noop, id=good.id))
        bad_when: Any = "soon"
        with pytest.raises(InvalidTaskError):
            await tm.register_task_at(Task(noop), bad_when)
        with pytest.raises(InvalidTaskError):
            await tm.register_task_after(Task(noop), bad_when)
        with pytest.raises(TaskNotFoundError):
            tm.get_task(uuid.uuid4())
        not_an_id: Any = "abc"
        with pytest.raises(TaskNotFoundError):
            tm.get_task(not_an_id)
        with pytest.raises(ConfigurationError):
            tm.set_max_workers(-1)
        await tm.wait(10)
        assert good.status is TaskStatus.COMPLETED
        assert tm.metrics().scheduled == 1
        assert len(tm.get_tasks()) == 1


async def test_registering_after_stop_raises_manager_stopped() -> None:
    tm = manager()
    await tm.start()
    await tm.stop_now()
    with pytest.raises(ManagerStoppedError):
        await tm.register_task(Task(noop))
    assert tm.get_tasks() == []


def _sync_generator(ctx: TaskContext) -> Any:
    yield 1


async def _async_generator(ctx: TaskContext) -> Any:
    yield 1


class _AsyncGeneratorCall:
    async def __call__(self, ctx: TaskContext) -> Any:
        yield 1


_GENERATORS = [
    _sync_generator,
    _async_generator,
    _AsyncGeneratorCall(),
    functools.partial(_async_generator),
]


@pytest.mark.parametrize("fn", _GENERATORS, ids=["generator", "async generator", "callable object", "partial"])
async def test_a_generator_function_is_refused_as_a_task_everywhere(fn: Any) -> None:
    """An async generator function 'completed' with the generator object, its body never run."""
    with pytest.raises(InvalidTaskError, match=r"generator function .* its body would never run"):
        Task(fn)
    async with manager() as tm:
        with pytest.raises(InvalidTaskError, match="generator function"):
            await tm.submit(fn, None)
        assert tm.get_tasks() == []  # nothing was registered
    with pytest.raises(InvalidTaskError, match="generator function"):
        define_task(fn)
    with pytest.raises(HandlerRegistrationError, match="generator function"):
        DurableHandlerSpec(None, fn)


async def _needs_two(a: int, b: int) -> int:
    return a + b


async def test_a_submitted_call_with_the_wrong_arguments_fails_its_task_not_the_worker() -> None:
    """submit calls ``fn(*args)`` inside the attempt: a TypeError there is the task's failure; the worker goes on."""
    async with manager(max_workers=1) as tm:
        bad = await tm.submit(_needs_two, 1)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="missing 1 required positional argument"):
            await bad
        assert bad.status is TaskStatus.FAILED
        assert await (await tm.with_options(priority=1).submit(_needs_two, 1, 2)) == 3
