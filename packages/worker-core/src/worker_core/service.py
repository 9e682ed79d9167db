"""The ``Service`` protocol that middleware wraps, ``register_middleware`` and ``LoggerMiddleware``."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .hooks import TaskHooks
    from .metrics import MetricsSnapshot
    from .protocols import TaskTracer
    from .results import DropPolicy, ResultSubscription
    from .retention import RetentionPolicy
    from .task import Task

__all__ = ("LoggerMiddleware", "Middleware", "Service", "register_middleware")


@runtime_checkable
class Service(Protocol):
    """What middleware wraps and the gRPC server drives: go-worker's ``Service`` interface, in Python.

    :class:`~worker_core.TaskManager` implements it; a middleware is any ``Service -> Service`` callable.
    """

    async def start(self) -> None:
        """Start the workers."""
        ...

    async def __aenter__(self) -> Any:
        """Start; the service to use inside the block."""
        ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop: gracefully, or at once when the block raised."""
        ...

    def set_max_workers(self, n: int) -> None:
        """Change the number of workers."""
        ...

    async def register_task(self, task: Task[Any]) -> uuid.UUID:
        """Queue a task."""
        ...

    async def register_tasks(self, *tasks: Task[Any]) -> list[uuid.UUID]:
        """Queue several tasks."""
        ...

    async def wait(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Wait until every task is terminal."""
        ...

    async def stop_graceful(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Finish the work, then stop."""
        ...

    async def stop_now(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Cancel everything and stop (waiting at most ``timeout`` for what was cancelled)."""
        ...

    async def cancel_all(self) -> None:
        """Cancel every unfinished task."""
        ...

    async def cancel_task(self, task_id: uuid.UUID) -> None:
        """Cancel one task."""
        ...

    def get_task(self, task_id: uuid.UUID) -> Task[Any]:
        """Look a task up."""
        ...

    def get_tasks(self) -> list[Task[Any]]:
        """Every registered task."""
        ...

    async def execute_task(self, task_id: uuid.UUID, timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109
        """Run a task now."""
        ...

    def subscribe_results(self, buffer: int = 10) -> ResultSubscription:
        """Subscribe to results."""
        ...

    def get_results(self) -> ResultSubscription:
        """Subscribe with the default buffer."""
        ...

    def set_results_drop_policy(self, policy: DropPolicy) -> None:
        """Set the drop policy."""
        ...

    def set_retention_policy(self, policy: RetentionPolicy | None) -> None:
        """Set the retention policy."""
        ...

    def set_hooks(self, hooks: TaskHooks | None) -> None:
        """Set the hooks."""
        ...

    def set_tracer(self, tracer: TaskTracer | None) -> None:
        """Set the tracer."""
        ...

    def metrics(self) -> MetricsSnapshot:
        """Counters snapshot."""
        ...


Middleware = Callable[[Service], Service]


def register_middleware(service: Service, *middlewares: Middleware) -> Service:
    """Wrap ``service`` in each middleware in turn: the last one listed ends up outermost (as Go)."""
    for middleware in middlewares:
        service = middleware(service)
    return service


class LoggerMiddleware:
    """Logs registrations, cancellations, executions and stops with their timings; never payloads.

    Use it as ``register_middleware(tm, LoggerMiddleware)`` or ``LoggerMiddleware(tm, logger=...)``.
    Every other attribute of the wrapped service (the whole manager API: ``register_durable_task``,
    ``state``, ``queue_depths``, ...) passes straight through, and ``async with`` starts and stops the
    wrapped service through this middleware (so the start and the stop are logged too).
    """

    def __init__(self, service: Service, logger: logging.Logger | None = None) -> None:
        self._next = service
        self._log = logger or logging.getLogger(__name__)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names this class does not define: the rest of the wrapped service's API.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._next, name)

    async def __aenter__(self) -> LoggerMiddleware:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.stop_graceful()
        else:
            await self.stop_now()

    def _took(self, name: str, started: float) -> None:
        self._log.info("`%s` took: %.6fs", name, time.perf_counter() - started)

    async def start(self) -> None:
        """Start the wrapped service and log it."""
        started = time.perf_counter()
        await self._next.start()
        self._took("start", started)

    def set_max_workers(self, n: int) -> None:
        """Pass through."""
        self._next.set_max_workers(n)

    async def register_task(self, task: Task[Any]) -> uuid.UUID:
        """Register and log the task id, priority and outcome."""
        started = time.perf_counter()
        try:
            task_id = await self._next.register_task(task)
        except Exception as exc:
            self._log.info("error while registering task ID %s - %s", task.id, type(exc).__name__)
            raise
        finally:
            self._took("register_task", started)
        self._log.info("registering task ID %s with priority: %s", task_id, task.priority)
        return task_id

    async def register_tasks(self, *tasks: Task[Any]) -> list[uuid.UUID]:
        """Register several tasks and log each id."""
        started = time.perf_counter()
        try:
            ids = await self._next.register_tasks(*tasks)
        finally:
            self._took("register_tasks", started)
        for task in tasks:
            self._log.info("registering task ID %s with priority: %s", task.id, task.priority)
        return ids

    async def wait(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Pass through."""
        await self._next.wait(timeout)

    async def stop_graceful(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Stop gracefully and log the time it took."""
        started = time.perf_counter()
        try:
            await self._next.stop_graceful(timeout)
        finally:
            self._took("stop_graceful", started)

    async def stop_now(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Stop now and log the time it took."""
        started = time.perf_counter()
        try:
            await self._next.stop_now(timeout)
        finally:
            self._took("stop_now", started)

    async def cancel_all(self) -> None:
        """Cancel everything and log the time it took."""
        started = time.perf_counter()
        try:
            await self._next.cancel_all()
        finally:
            self._took("cancel_all", started)

    async def cancel_task(self, task_id: uuid.UUID) -> None:
        """Cancel one task and log its id."""
        self._log.info("cancelling task ID %s", task_id)
        started = time.perf_counter()
        try:
            await self._next.cancel_task(task_id)
        finally:
            self._took("cancel_task", started)

    def get_task(self, task_id: uuid.UUID) -> Task[Any]:
        """Pass through."""
        return self._next.get_task(task_id)

    def get_tasks(self) -> list[Task[Any]]:
        """Pass through."""
        return self._next.get_tasks()

    async def execute_task(self, task_id: uuid.UUID, timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109
        """Execute a task now and log its id, error type and timing."""
        self._log.info("executing task ID %s", task_id)
        started = time.perf_counter()
        try:
            return await self._next.execute_task(task_id, timeout)
        except Exception as exc:
            self._log.info("error while executing task ID %s - %s", task_id, type(exc).__name__)
            raise
        finally:
            self._took("execute_task", started)

    def subscribe_results(self, buffer: int = 10) -> ResultSubscription:
        """Pass through."""
        return self._next.subscribe_results(buffer)

    def get_results(self) -> ResultSubscription:
        """Pass through."""
        return self._next.get_results()

    def set_results_drop_policy(self, policy: DropPolicy) -> None:
        """Pass through."""
        self._next.set_results_drop_policy(policy)

    def set_retention_policy(self, policy: RetentionPolicy | None) -> None:
        """Pass through."""
        self._next.set_retention_policy(policy)

    def set_hooks(self, hooks: TaskHooks | None) -> None:
        """Pass through."""
        self._next.set_hooks(hooks)

    def set_tracer(self, tracer: TaskTracer | None) -> None:
        """Pass through."""
        self._next.set_tracer(tracer)

    def metrics(self) -> MetricsSnapshot:
        """Pass through."""
        return self._next.metrics()
