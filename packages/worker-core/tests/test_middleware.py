from __future__ import annotations

import logging
import uuid
from typing import Any, ClassVar

import pytest
from core_helpers import manager
from worker_core import (
    LoggerMiddleware,
    QueueFullError,
    Service,
    Task,
    TaskContext,
    TaskManager,
    register_middleware,
)

SECRET = "payload-secret-value"


async def secret_task(ctx: TaskContext) -> str:
    return SECRET


class Tagging:
    """A middleware that records the order it was applied in."""

    applied: ClassVar[list[str]] = []

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __call__(self, service: Service) -> Service:
        Tagging.applied.append(self.tag)
        return LoggerMiddleware(service, logging.getLogger(f"test.{self.tag}"))


def test_task_manager_implements_service() -> None:
    assert isinstance(TaskManager(), Service)


async def test_last_middleware_listed_is_outermost() -> None:
    Tagging.applied.clear()
    tm = manager()
    wrapped = register_middleware(tm, Tagging("inner"), Tagging("outer"))
    assert Tagging.applied == ["inner", "outer"]
    assert isinstance(wrapped, LoggerMiddleware)
    assert isinstance(wrapped._next, LoggerMiddleware)
    assert wrapped._next._next is tm


async def test_logger_middleware_logs_ids_and_timings_never_payloads(caplog: pytest.LogCaptureFixture) -> None:
    tm = manager(max_tasks=1)
    service = register_middleware(tm, LoggerMiddleware)
    with caplog.at_level(logging.INFO, logger="worker_core.service"):
        await service.start()
        tm.set_max_workers(0)
        task = Task(secret_task, priority=7)
        task_id = await service.register_task(task)
        with pytest.raises(QueueFullError):
            await service.register_task(Task(secret_task))
        tm.set_max_workers(1)
        await service.wait(10)
        await service.cancel_task(task_id)
        with pytest.raises(Exception, match="not found"):
            await service.execute_task(uuid.uuid4())
        await service.stop_graceful(10)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"registering task ID {task_id} with priority: 7" in text
    assert "error while registering task ID" in text
    assert "QueueFullError" in text
    assert f"cancelling task ID {task_id}" in text
    assert "`register_task` took:" in text
    assert "`stop_graceful` took:" in text
    assert "error while executing task ID" in text
    assert SECRET not in text
    assert service.get_task(task_id).result == SECRET


async def test_a_wrapped_manager_keeps_the_whole_api_and_its_async_context_manager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tm = manager()
    service = register_middleware(tm, LoggerMiddleware, LoggerMiddleware)
    with caplog.at_level(logging.INFO, logger="worker_core.service"):
        async with service as running:
            assert running is service
            assert tm.running
            # Names Service does not declare pass through every layer to the manager.
            wrapped: Any = service
            assert wrapped.state is tm.state
            assert wrapped.queue_depths() == {}
            handle_id = await service.register_task(Task(secret_task))
            await service.wait(10)
            assert tm.get_task(handle_id).result == SECRET
    assert tm.state == "stopped"
    logged = [r.getMessage() for r in caplog.records]
    assert any("`start` took" in m for m in logged)
    assert any("`stop_graceful` took" in m for m in logged)
    with pytest.raises(AttributeError):
        wrapped.no_such_method  # noqa: B018
