from __future__ import annotations

import inspect
from typing import Any

import worker_core
from worker_core import Task, TaskContext, TaskManager, TaskStatus

PINNED = {
    "TaskManager", "Task", "TaskContext", "TaskStatus", "Result", "DropPolicy", "RetentionPolicy", "TaskHooks",
    "MetricsSnapshot", "Service", "register_middleware", "Retry", "Abort", "WorkerError", "QueueFullError",
    "TaskNotFoundError", "InvalidTaskError", "TaskExistsError", "ManagerStoppedError", "LoggerMiddleware",
}  # fmt: skip


def test_all_is_a_complete_sorted_tuple() -> None:
    assert isinstance(worker_core.__all__, tuple)
    assert set(worker_core.__all__) >= PINNED
    for name in worker_core.__all__:
        assert hasattr(worker_core, name), name


def test_pinned_signatures_and_sync_async_split() -> None:
    params = inspect.signature(TaskManager).parameters
    assert list(params)[:6] == [
        "max_workers",
        "max_tasks",
        "tasks_per_second",
        "timeout",
        "retry_delay",
        "max_retries",
    ]
    assert params["default_queue"].kind is inspect.Parameter.KEYWORD_ONLY
    for name in (
        "start", "register_task", "register_tasks", "register_task_at", "register_task_after", "cancel_task",
        "cancel_all", "execute_task", "wait", "stop_graceful", "stop_now",
    ):  # fmt: skip
        assert inspect.iscoroutinefunction(getattr(TaskManager, name)), name
    for name in (
        "get_task", "get_tasks", "subscribe_results", "get_results", "set_results_drop_policy",
        "set_retention_policy", "set_hooks", "set_tracer", "metrics", "set_max_workers",
    ):  # fmt: skip
        assert not inspect.iscoroutinefunction(getattr(TaskManager, name)), name


def test_status_values_and_go_names() -> None:
    assert [s.value for s in TaskStatus] == [
        "queued", "running", "retrying", "completed", "failed", "cancelled", "deadline_exceeded", "invalid",
    ]  # fmt: skip
    assert TaskStatus.RETRYING.go_name == "RateLimited"
    assert TaskStatus.DEADLINE_EXCEEDED.go_name == "ContextDeadlineReached"
    assert {s for s in TaskStatus if s.is_terminal} == worker_core.TERMINAL_STATUSES
    assert not TaskStatus.QUEUED.is_terminal


async def test_task_and_manager_can_be_subclassed() -> None:
    class LabelledTask(Task[Any]):
        label = "mine"

    class CountingManager(TaskManager):
        def queued_or_running(self) -> int:
            snapshot = self.metrics()
            return snapshot.queue_depth + snapshot.running

    async def noop(ctx: TaskContext) -> str:
        return "done"

    async with CountingManager(max_workers=2, tasks_per_second=None) as tm:
        assert tm.queued_or_running() == 0
        task = LabelledTask(noop)
        assert await tm.execute_task(await tm.register_task(task)) == "done"
        assert tm.get_task(task.id).status is TaskStatus.COMPLETED
        assert task.label == "mine"
