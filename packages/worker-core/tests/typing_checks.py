"""Static typing of the public API, checked by ``mypy --strict`` (the ``typecheck`` session); never run.

``assert_type`` pins what mypy infers. Each line marked ``type: ignore[code]`` must NOT type-check: mypy's
``warn_unused_ignores`` (part of ``--strict``) fails the run if one of them ever does.
"""

from __future__ import annotations

import uuid
from typing import Any, assert_type

from worker_core import Result, Task, TaskContext, TaskDefinition, TaskHandle, TaskManager, define_task


async def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode()


def parse(data: bytes) -> dict[str, int]:
    return {"n": len(data)}


async def ctx_task(ctx: TaskContext) -> float:
    return 1.0


def ctx_plain(ctx: TaskContext) -> str:
    return ""


@define_task(retries=3, queue="emails")
async def send(to: str, body: str) -> bool:
    return True


@define_task
def total(values: list[int]) -> int:
    return sum(values)


async def inferred(tm: TaskManager) -> None:
    # submit: the result type comes from the function (awaited for an async def), arguments are checked.
    h1 = await tm.submit(fetch, "https://example.org", retries=2)
    assert_type(h1, TaskHandle[bytes])
    assert_type(await h1, bytes)
    assert_type(await h1.result(timeout=1.0), bytes)
    h2 = await tm.submit(parse, b"abc")
    assert_type(h2, TaskHandle[dict[str, int]])
    h3 = await tm.with_options(priority=1, queue="q", delay=5).submit(fetch, "u")
    assert_type(h3, TaskHandle[bytes])

    # task definitions keep the function's signature.
    assert isinstance(send, TaskDefinition)
    assert_type(await send("a@b", "hi"), bool)  # a direct call is the function itself
    assert_type(await tm.submit(send, "a@b", "hi"), TaskHandle[bool])
    assert_type(await tm.submit(total, [1, 2]), TaskHandle[int])

    # Task[T], Result[T], execute_task.
    t1 = Task(ctx_task)
    assert_type(t1, Task[float])
    assert_type(Task(ctx_plain, priority=2), Task[str])
    assert_type(t1.result, float | None)
    assert_type(Result.of(t1), Result[float])
    assert_type(await tm.execute_task(tm.handle(await tm.register_task(t1))), Any)
    assert_type(await tm.execute_task(h1), bytes)
    assert_type(await tm.execute_task(uuid.uuid4()), Any)


async def rejected(tm: TaskManager) -> None:
    await tm.submit(fetch, 42)  # type: ignore[call-overload]
    await tm.submit(fetch, "u", retries="3")  # type: ignore[arg-type]
    await tm.submit(fetch)  # type: ignore[call-overload]
    await tm.submit(fetch, "u", priority=1)  # type: ignore[call-arg]
    await tm.submit(send, "a@b")  # type: ignore[call-overload]
    tm.with_options(priority="high")  # type: ignore[arg-type]
    tm.with_options(prio=1)  # type: ignore[call-arg]
    h: TaskHandle[str] = await tm.submit(fetch, "u")  # type: ignore[call-overload]
    Task(parse, priority=1)  # type: ignore[arg-type]
    define_task(retries="3")  # type: ignore[call-overload]
    del h
