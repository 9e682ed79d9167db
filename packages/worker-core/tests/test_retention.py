from __future__ import annotations

import pytest
from core_helpers import manager, until
from worker_core import ConfigurationError, RetentionPolicy, Task, TaskContext, TaskNotFoundError, TaskStatus


async def noop(ctx: TaskContext) -> None:
    return None


async def test_max_entries_evicts_the_oldest_finished_tasks() -> None:
    async with manager(max_workers=1) as tm:
        tm.set_retention_policy(RetentionPolicy(max_entries=1))
        first, second = Task(noop, priority=0), Task(noop, priority=1)  # equal priorities would run by id
        await tm.register_tasks(first, second)
        await tm.wait(10)
        assert [t.id for t in tm.get_tasks()] == [second.id]
        with pytest.raises(TaskNotFoundError):
            tm.get_task(first.id)


async def test_a_policy_set_later_evicts_tasks_finished_before_it_oldest_first() -> None:
    async with manager(max_workers=1) as tm:
        tasks = [Task(noop, priority=p) for p in (2, 0, 1)]  # finish order: tasks[1], tasks[2], tasks[0]
        await tm.register_tasks(*tasks)
        await tm.wait(10)
        tm.set_retention_policy(RetentionPolicy(max_entries=2))
        assert {t.id for t in tm.get_tasks()} == {tasks[2].id, tasks[0].id}
        waiting = Task(noop, priority=3)
        await tm.register_task(waiting)
        await tm.wait(10)
        assert {t.id for t in tm.get_tasks()} == {tasks[0].id, waiting.id}
        tm.set_retention_policy(None)  # keeps everything from now on, and forgets the eviction order
        await tm.register_task(Task(noop))
        await tm.wait(10)
        assert len(tm.get_tasks()) == 3


async def test_ttl_empties_the_registry() -> None:
    async with manager() as tm:
        tm.set_retention_policy(RetentionPolicy(ttl=0.05, cleanup_interval=0.01))
        await tm.register_tasks(Task(noop), Task(noop))
        await tm.wait(10)
        await until(lambda: not tm.get_tasks())


async def test_active_tasks_are_never_evicted_under_load() -> None:
    async with manager(max_tasks=50) as tm:
        tm.set_retention_policy(RetentionPolicy(max_entries=5))
        tm.set_max_workers(0)
        tasks = [Task(noop) for _ in range(30)]
        await tm.register_tasks(*tasks)
        assert len(tm.get_tasks()) == 30  # all queued: none may go
        tm.set_max_workers(4)
        await tm.wait(10)
        remaining = tm.get_tasks()
        assert len(remaining) <= 5
        assert all(t.status is TaskStatus.COMPLETED for t in remaining)


async def test_bad_policies_are_rejected() -> None:
    async with manager() as tm:
        with pytest.raises(ConfigurationError):
            tm.set_retention_policy(RetentionPolicy(ttl=-1))
        with pytest.raises(ConfigurationError):
            tm.set_retention_policy(RetentionPolicy(max_entries=0))
        tm.set_retention_policy(None)
