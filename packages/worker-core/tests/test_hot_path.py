"""What the lean hot path must keep: id order, band bookkeeping, and deadlines of inline attempts."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import time
import uuid
import weakref
from typing import Any

import pytest
from core_helpers import manager
from worker_core import Task, TaskContext, TaskStatus, TaskTimeoutError
from worker_core._runtime.scheduler import ReadyQueues


async def noop(ctx: TaskContext) -> None:
    return None


def test_default_ids_are_uuid7_strictly_increasing_and_current() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [Task(noop).id for _ in range(5_000)]
    after_ms = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert [i.int for i in ids] == sorted(i.int for i in ids)
    assert len({i.int for i in ids}) == len(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)  # the canonical string order, too
    stamps = [i.int >> 80 for i in ids]  # 48-bit Unix milliseconds
    assert before_ms <= stamps[0]
    assert stamps[-1] <= after_ms + 1


def test_a_forked_child_makes_ids_of_its_own() -> None:
    # A fresh single-threaded interpreter forks: the child must not continue the parent's counter.
    code = """
import json, os, sys
from worker_core import Task
async def noop(ctx): return None
first = Task(noop).id.int
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, json.dumps([Task(noop).id.int for _ in range(100)]).encode())
    os._exit(0)
os.close(write)
child = json.loads(os.read(read, 1 << 20))
os.waitpid(pid, 0)
parent = [Task(noop).id.int for _ in range(100)]
print(json.dumps({"first": first, "child": child, "parent": parent}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    ids = json.loads(out.stdout)
    assert not set(ids["child"]) & set(ids["parent"])
    assert ids["parent"] == sorted(ids["parent"])
    assert ids["parent"][0] > ids["first"]
    assert ids["child"] == sorted(ids["child"])


async def test_equal_tasks_start_in_registration_order() -> None:
    order: list[int] = []

    async def record(ctx: TaskContext) -> None:
        order.append(int(ctx.task.name))

    async with manager(max_workers=1, max_tasks=200) as tm:
        tm.set_max_workers(0)  # everything queued first, so the scheduler alone decides the order
        for i in range(150):
            await tm.register_task(Task(record, name=str(i)))
        tm.set_max_workers(1)
        await tm.wait(10)
    assert order == list(range(150))


def _task(name: str, key: int | None = None, priority: int = 0) -> Task[Any]:
    return Task(noop, name=name, queue="q", priority=priority, id=None if key is None else uuid.UUID(int=key))


def _drain(scheduler: ReadyQueues) -> list[str]:
    names = []
    while (task := scheduler.pop()) is not None:
        names.append(task.name)
    return names


def test_out_of_order_ids_merge_with_the_fifo_in_id_order() -> None:
    scheduler = ReadyQueues({})
    for name, key in (("k5", 5), ("k3", 3), ("k9", 9), ("k1", 1), ("k7", 7)):
        scheduler.push(_task(name, key))
    scheduler.push(_task("new"))  # a generated UUIDv7 id: larger than all of these
    assert _drain(scheduler) == ["k1", "k3", "k5", "k7", "k9", "new"]
    assert scheduler.size == 0


def test_a_task_removed_and_pushed_again_pops_once_at_its_place() -> None:
    scheduler = ReadyQueues({})
    a, b, c = _task("a", 1), _task("b", 2), _task("c", 3)
    for task in (a, b, c):
        scheduler.push(task)
    assert scheduler.remove(b)
    scheduler.push(b)  # its stale FIFO copy is still there: both copies sort alike
    assert scheduler.size == 3
    assert _drain(scheduler) == ["a", "b", "c"]
    scheduler.push(a)
    assert scheduler.remove(a)
    scheduler.push(a)
    assert [t.name for t in scheduler.drain()] == ["a"]
    assert scheduler.pop() is None
    assert scheduler.size == 0


def test_bands_of_one_queue_pop_by_priority_and_empty_bands_are_dropped() -> None:
    scheduler = ReadyQueues({})
    scheduler.push(_task("p2-a", priority=2))
    scheduler.push(_task("p1-a", priority=1))
    scheduler.push(_task("p2-b", priority=2))
    assert scheduler.pop().name == "p1-a"  # type: ignore[union-attr]
    scheduler.push(_task("p0", priority=0))  # a new front band after the old one emptied
    scheduler.push(_task("p1-b", priority=1))
    assert _drain(scheduler) == ["p0", "p1-b", "p2-a", "p2-b"]
    assert scheduler.depths() == {}  # an empty queue is forgotten


async def test_a_hung_task_times_out_while_short_ones_keep_finishing() -> None:
    # The deadline timer is first armed for a short task that finishes long before; when it fires it
    # must find the hung attempt among the workers' slots and re-arm for it.
    hung_started = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        hung_started.set()
        await asyncio.Event().wait()

    async with manager(max_workers=2, max_tasks=1_000, timeout=0.3, max_retries=0) as tm:
        await tm.register_task(Task(noop, priority=-1))
        hung = Task(hang)
        await tm.register_task(hung)
        await hung_started.wait()
        short = [Task(noop) for _ in range(200)]
        for task in short:
            await tm.register_task(task)
        await tm.wait(10)
    assert hung.status is TaskStatus.DEADLINE_EXCEEDED
    assert isinstance(hung.error, TaskTimeoutError)
    assert all(task.status is TaskStatus.COMPLETED for task in short)


async def test_execute_task_with_the_default_timeout_times_out() -> None:
    async def hang(ctx: TaskContext) -> None:
        await asyncio.Event().wait()

    async with manager(max_workers=1, timeout=0.05, max_retries=0) as tm:
        tm.set_max_workers(0)  # no worker: the caller runs it
        task = Task(hang)
        await tm.register_task(task)
        with pytest.raises(TaskTimeoutError):
            await tm.execute_task(task.id)
    assert task.status is TaskStatus.DEADLINE_EXCEEDED


@pytest.mark.parametrize("tasks_per_second", [None, 0.5])
async def test_a_stopped_manager_is_freed_with_its_tasks(tasks_per_second: float | None) -> None:
    # Stop wakes idle workers instead of cancelling them, and a worker waiting for a rate limiter token
    # ends quietly: a re-raised CancelledError kept its traceback, so the worker's frame and the whole
    # manager (every finished task with it) outlived the manager.
    class Payload:
        pass

    async def make(ctx: TaskContext) -> Payload:
        return Payload()

    tm = manager(max_workers=4, tasks_per_second=tasks_per_second)
    async with tm:
        first = await tm.register_task(Task(make))
        await tm.register_task(Task(make))  # with the limiter on, a worker waits for its token
        await tm.execute_task(first)
        result = tm.get_task(first).result
        assert isinstance(result, Payload)
        refs: list[weakref.ref[object]] = [weakref.ref(tm), weakref.ref(result)]
        await tm.stop_now()
    del tm, result
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
