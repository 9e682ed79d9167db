from __future__ import annotations

import uuid
from typing import Any

from worker_core import Task, TaskContext
from worker_core._runtime.delayed import DelayedTasks
from worker_core._runtime.ratelimit import TokenBucket
from worker_core._runtime.scheduler import ReadyQueues


async def noop(ctx: TaskContext) -> None:
    return None


def make(queue: str, name: str = "", priority: int = 0, weight: int = 1, task_id: uuid.UUID | None = None) -> Task[Any]:
    return Task(noop, queue=queue, name=name, priority=priority, weight=weight, id=task_id)


def drain(scheduler: ReadyQueues) -> list[str]:
    names = []
    while (task := scheduler.pop()) is not None:
        names.append(task.name)
    return names


def test_weighted_round_robin_reproduces_the_go_vector() -> None:
    scheduler = ReadyQueues({"critical": 3, "default": 1, "bulk": 2})
    serial = 0
    for queue in ("critical", "default", "bulk"):
        for i in range(6):
            serial += 1  # equal tasks, ids ascending (and unique, as a manager's are): each queue pops in push order
            scheduler.push(make(queue, f"{queue}-{i}", task_id=uuid.UUID(int=serial)))
    assert drain(scheduler) == [
        "bulk-0", "bulk-1", "critical-0", "critical-1", "critical-2", "default-0",
        "bulk-2", "bulk-3", "critical-3", "critical-4", "critical-5", "default-1",
        "bulk-4", "bulk-5", "default-2", "default-3", "default-4", "default-5",
    ]  # fmt: skip


def test_priority_then_weight_then_id_string() -> None:
    scheduler = ReadyQueues({})
    low_id = uuid.UUID("00000000-0000-4000-8000-000000000001")
    high_id = uuid.UUID("f0000000-0000-4000-8000-000000000000")
    scheduler.push(make("q", "p5", priority=5))
    scheduler.push(make("q", "p1-w1-high-id", priority=1, weight=1, task_id=high_id))
    scheduler.push(make("q", "p1-w3", priority=1, weight=3))
    scheduler.push(make("q", "p1-w1-low-id", priority=1, weight=1, task_id=low_id))
    scheduler.push(make("q", "negative", priority=-2))
    assert drain(scheduler) == ["negative", "p1-w3", "p1-w1-low-id", "p1-w1-high-id", "p5"]


def test_id_order_is_the_canonical_string_order() -> None:
    scheduler = ReadyQueues({})
    ids = [uuid.uuid4() for _ in range(50)]
    for task_id in ids:
        scheduler.push(make("q", str(task_id), task_id=task_id))
    assert drain(scheduler) == sorted(str(i) for i in ids)


def test_removed_task_is_skipped_and_empty_queue_loses_its_turn() -> None:
    scheduler = ReadyQueues({"a": 2})
    a1, a2, b1 = make("a", "a1", task_id=uuid.UUID(int=1)), make("a", "a2", task_id=uuid.UUID(int=2)), make("b", "b1")
    for task in (a1, a2, b1):
        scheduler.push(task)
    assert scheduler.remove(a1)
    assert not scheduler.remove(a1)
    assert scheduler.size == 2
    assert drain(scheduler) == ["a2", "b1"]
    assert scheduler.size == 0


def test_delayed_heap_orders_by_due_time_then_id() -> None:
    heap = DelayedTasks()
    late, early_b, early_a = (
        make("q", "late"),
        make("q", "b", task_id=uuid.UUID(int=9)),
        make("q", "a", task_id=uuid.UUID(int=3)),
    )
    heap.push(late, 20.0)
    heap.push(early_b, 10.0)
    heap.push(early_a, 10.0)
    assert heap.next_due() == 10.0
    assert heap.pop_due(5.0) == []
    assert [t.name for t in heap.pop_due(10.0)] == ["a", "b"]
    assert heap.remove(late)
    assert heap.next_due() is None
    assert heap.size == 0


def test_token_bucket_starts_full_and_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=2, now=0.0)
    assert bucket.try_take(0.0) == 0.0
    assert bucket.try_take(0.0) == 0.0
    wait = bucket.try_take(0.0)
    assert abs(wait - 0.1) < 1e-9
    assert bucket.try_take(0.05) > 0  # half a token
    assert bucket.try_take(0.1) == 0.0
    assert bucket.try_take(10.0) == 0.0  # refill is capped at the burst
    assert bucket.try_take(10.0) == 0.0
    assert bucket.try_take(10.0) > 0
