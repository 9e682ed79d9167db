"""The public :class:`TaskManager`: prioritized, rate-limited, retried tasks on asyncio."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from mypy_extensions import mypyc_attr

from ._anchor import ManagerAnchor
from ._config import config_int, config_seconds, is_plain_int, is_str, utc_timestamp
from ._durable_api import DurableApi, DurableSettings, register_each
from ._ratelimit import TokenBucket
from ._settings import SettingsApi
from .durable.types import DurableBackend, QueueConfigurableBackend
from .errors import (
    ConfigurationError,
    DurableOnlyError,
    InvalidTaskError,
    ManagerStoppedError,
    QueueFullError,
    TaskAlreadyStartedError,
    TaskCancelledError,
    TaskExistsError,
    TaskNotFoundError,
)
from .hooks import call_hook
from .plugins import Plugins
from .protocols import TaskTracer
from .status import TERMINAL_STATUSES, TaskStatus
from .task import Task

__all__ = ("TaskManager",)

logger = logging.getLogger(__name__)

_QUEUED = TaskStatus.QUEUED
_RETRYING = TaskStatus.RETRYING
_RUNNING = TaskStatus.RUNNING
_CANCELLED = TaskStatus.CANCELLED
_INSTRUMENTATION_EVENTS = ("on_scheduled", "on_start", "on_finish", "on_retry", "on_result_dropped")


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
class TaskManager(SettingsApi, DurableApi):
    """Runs tasks concurrently on asyncio: priorities, weighted queues, rate limit, retries, timeouts.

    Args:
        max_workers: Tasks running at once; ``None`` means the CPU count.
        max_tasks: Most tasks waiting to start (queued, delayed); more raise :class:`QueueFullError`.
        tasks_per_second: Start rate (token bucket, burst ``min(max_workers, max_tasks)``, every attempt
            takes a token); ``None`` or ``<= 0`` disables rate limiting.
        timeout: Default seconds per attempt; ``None`` means no default timeout.
        retry_delay: Default base backoff in seconds.
        max_retries: Default retries and the cap on a task's own ``retries``.
        default_queue: Queue of tasks registered with ``queue=""``.
        queue_weights: Share of starts per queue (weighted round robin); missing queues weigh 1.
        durable_backend: A :class:`~worker_core.durable.types.DurableBackend`, or a URL resolved through
            the backend plugins (``"memory://"``). With a backend, tasks come from it (``register_task``
            raises :class:`DurableOnlyError`; use ``register_durable_task``).
        durable_handlers: Handler name -> spec with ``make()`` and ``fn(ctx, payload)`` (a mapping or a
            typed handler registry).
        durable_codec: A codec object or a registered codec name; by default the protobuf codec for
            handlers whose ``make()`` returns a protobuf message, msgspec JSON for the others.
        durable_lease: Seconds a leased task is reserved for this node.
        durable_poll_interval: Seconds between polls of an empty backend (a backend that can wake the
            loop is waited on instead).
        durable_batch_size: Most leases per dequeue; by default as many as there are free workers.
        durable_lease_renewal_interval: Extend held leases this often (``None``: never; at least every
            ``durable_lease / 2`` when set higher).
        plugins: The plugins to resolve backend URLs and codec names with (loaded on first use if omitted).

    Raises:
        ConfigurationError: a value of the wrong type or out of range.

    The constructor does no I/O and needs no running loop. ``async with TaskManager(...) as tm:``
    starts it and stops it gracefully (``stop_now`` when the block raises). The manager is not
    thread-safe: call it from the event loop it was started on.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        max_tasks: int = 10,
        tasks_per_second: float | None = 5.0,
        timeout: float | timedelta | None = 300.0,
        retry_delay: float | timedelta = 1.0,
        max_retries: int = 3,
        *,
        default_queue: str = "default",
        queue_weights: Mapping[str, int] | None = None,
        durable_backend: DurableBackend | str | None = None,
        durable_handlers: Any = None,
        durable_codec: Any = None,
        durable_lease: float | timedelta = 30.0,
        durable_poll_interval: float | timedelta = 0.2,
        durable_batch_size: int | None = None,
        durable_lease_renewal_interval: float | timedelta | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        workers = (os.cpu_count() or 1) if max_workers is None else config_int(max_workers, "max_workers", 1)
        tasks = config_int(max_tasks, "max_tasks", 1)
        tps_value: object = tasks_per_second
        if tps_value is not None and (not isinstance(tps_value, int | float) or isinstance(tps_value, bool)):
            raise ConfigurationError(f"tasks_per_second must be a number or None, got {tasks_per_second!r}")
        tps = float(tasks_per_second) if tasks_per_second is not None and tasks_per_second > 0 else None
        timeout_s = config_seconds(timeout, "timeout")
        retry_delay_s = config_seconds(retry_delay, "retry_delay")
        if retry_delay_s is None:
            raise ConfigurationError("retry_delay must be > 0")
        retries = config_int(max_retries, "max_retries", 0)
        if not is_str(default_queue) or not default_queue.strip():
            raise ConfigurationError("default_queue must be a non-empty str")
        weights: dict[str, int] = {}
        for name, weight in (queue_weights or {}).items():
            if not is_str(name) or not is_plain_int(weight):
                raise ConfigurationError(f"queue_weights must map str to int, got {name!r}: {weight!r}")
            if name.strip():
                weights[name.strip()] = weight if weight > 0 else 1
        super().__init__(
            max_workers=workers,
            max_tasks=tasks,
            tasks_per_second=tps,
            timeout_s=timeout_s,
            retry_delay_s=retry_delay_s,
            max_retries=retries,
            default_queue=default_queue.strip(),
            queue_weights=weights,
        )
        settings = None
        if durable_backend is not None:
            settings = DurableSettings(
                durable_backend,
                durable_handlers,
                durable_codec,
                durable_lease,
                durable_poll_interval,
                durable_batch_size,
                durable_lease_renewal_interval,
            )
        if plugins is not None and not isinstance(plugins, Plugins):
            raise ConfigurationError("plugins must be a worker_core.Plugins")
        self._init_durable(settings, plugins)
        self._stop_done: asyncio.Future[None] | None = None

    @property
    def anchor(self) -> ManagerAnchor:
        """An object to weakly reference in place of this manager; it lives exactly as long as the manager.

        The compiled build's ``TaskManager`` cannot be weakly referenced; ``weakref.ref(tm.anchor)`` works in
        both builds, and ``ref().manager`` is the manager while it lives.
        """
        anchor = self._anchor
        if anchor is None:
            anchor = self._anchor = ManagerAnchor(self)
        return anchor

    @classmethod
    def with_defaults(cls) -> Self:
        """A manager with go-worker's defaults: CPU-count workers, 10 tasks, 5/s, 5 min, 1 s, 3 retries."""
        return cls()

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the workers on the running loop; idempotent.

        With a durable backend, ``start`` resolves it, connects it when it has ``connect()`` and picks every
        handler's codec, so a bad URL, wrong credentials or an unreachable store fail here.

        Raises:
            ManagerStoppedError: the manager was stopped (a manager does not restart).
            ConfigurationError: the durable backend or a codec cannot be set up (unknown scheme, bad credentials).
            BackendUnavailableError: the durable backend cannot be reached.
        """
        if self._stopped:
            raise ManagerStoppedError("the task manager is stopped")
        if self._started:
            return
        backend = await self._open_durable() if self._durable_settings is not None else None
        loop = self._loop = asyncio.get_running_loop()
        self._started = True
        if self._tps is not None:
            self._limiter = TokenBucket(self._tps, min(self._max_workers, self._max_tasks), loop.time())
        if backend is not None:
            if isinstance(backend, QueueConfigurableBackend):
                backend.configure_queues(self._default_queue, dict(self._queue_weights))
            runner = self._durable = self._make_runner(self)
            self._capacity_hook = runner.notify_capacity
        self._spawn_workers()
        self._arm_delayed()
        if self._durable is not None:
            self._durable.start()
        if self._retention is not None and self._retention[0] is not None:
            self._start_retention_loop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.stop_graceful()
        else:
            await self.stop_now()

    async def wait(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109 - pinned API
        """Wait until every registered task is terminal (its result published, its hooks done).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        timeout_s = config_seconds(timeout, "timeout", allow_zero=True)
        if not self._active:
            return
        future = asyncio.get_running_loop().create_future()
        self._wait_futures.append(future)
        async with asyncio.timeout(timeout_s):
            await future

    async def stop_graceful(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109 - pinned API
        """Stop intake, let queued and running tasks finish, then stop.

        Raises:
            TimeoutError: ``timeout`` passed first; what was left has been cancelled and the manager
                is stopped all the same.
        """
        self._accepting = False
        timeout_s = config_seconds(timeout, "timeout", allow_zero=True)
        try:
            async with asyncio.timeout(timeout_s):
                if self._durable is not None:
                    # Lease nothing more, hand back what has not started, let the running ones finish.
                    await self._durable.stop_leasing()
                    self._durable.take_unstarted()
                    await self._durable.running_done()
                await self.wait()
        except TimeoutError:
            await self.stop_now()
            raise
        await self.stop_now()

    async def stop_now(self) -> None:
        """Cancel everything, and return once every worker (and worker thread) has exited; idempotent."""
        self._accepting = False
        if self._stopped:
            if self._stop_done is not None:
                await asyncio.shield(self._stop_done)  # a concurrent stop_now: return when it is done
            return
        self._stopped = self._closing = True
        self._stop_done = asyncio.get_running_loop().create_future()
        try:
            await self._stop_everything()
        finally:
            self._stop_done.set_result(None)

    async def _stop_everything(self) -> None:
        durable = self._durable
        if durable is not None:
            durable._releasing = True  # interrupted durable tasks are handed back, not dead-lettered
            await durable.stop_leasing()
            durable.take_unstarted()
        if self._delayed_timer is not None:
            self._delayed_timer.cancel()
            self._delayed_timer = None
        for task in self._ready.drain() + self._delayed.drain():
            await self._cancel_waiting(task)
        for task in [t for t in self._tasks.values() if t._status is _RETRYING]:
            await self._cancel_waiting(task)
        for task in [t for t in self._tasks.values() if t._status is _RUNNING]:
            if task._cancel_reason is None:
                self._interrupt(task, _CANCELLED)
        workers = list(self._workers.values())
        # Idle workers are woken, not cancelled (a cancelled coroutine's traceback can keep the whole
        # manager alive after it is gone); only a wait for a rate limiter token is cut short.
        for index in self._throttled:
            self._workers[index].cancel()
        self._wake_all()
        await asyncio.gather(*workers, return_exceptions=True)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
            self._retention_task = None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadlines.clear()
        self._deadline_lane.clear()
        self._worker_ctx[:] = [None] * len(self._worker_ctx)
        for pool in self._pools:
            pool.shutdown(wait=True)
        self._pools.clear()
        self._pool = None
        if durable is not None:
            await durable.close()
        await self._close_durable()
        for subscription in self._subscriptions:
            subscription._finish()
        self._subscriptions.clear()

    @staticmethod
    def _cancel_retry_timer(task: Task) -> None:
        """Stop the backoff timer of a RETRYING task (it sits in ``task._entry`` meanwhile)."""
        if task._status is _RETRYING and task._entry is not None:
            timer: asyncio.TimerHandle = task._entry  # type: ignore[assignment]
            timer.cancel()
            task._entry = None

    async def _cancel_waiting(self, task: Task) -> None:
        self._cancel_retry_timer(task)
        pending = self._finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
        if pending is not None:
            await pending

    def set_max_workers(self, n: int) -> None:
        """Change how many tasks may run at once; ``0`` pauses starting new ones.

        Shrinking lets the highest-numbered workers finish their current task, then exit.

        Raises:
            ConfigurationError: ``n`` is negative or not an int.
        """
        self._max_workers = config_int(n, "max_workers", 0)
        if self._started and not self._stopped:
            self._spawn_workers()
            self._wake_all()

    # ---------------------------------------------------------------------------------- registration

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise ManagerStoppedError("the task manager is not accepting new tasks")

    async def register_task(self, task: Task) -> uuid.UUID:
        """Queue ``task``; return its id.

        Raises:
            InvalidTaskError: ``task`` is not a :class:`Task` or one of its fields is invalid.
            TaskExistsError: a task with this id is registered (or this object already was).
            QueueFullError: ``max_tasks`` tasks are already waiting to start.
            ManagerStoppedError: the manager is stopping or stopped.
            DurableOnlyError: a durable backend is configured.
        """
        if type(task) is not Task and not isinstance(task, Task):
            raise InvalidTaskError(f"expected a Task, got {type(task).__name__}")
        if self._durable_settings is not None:
            raise DurableOnlyError("durable backend enabled; use register_durable_task")
        if not self._accepting:
            raise ManagerStoppedError("the task manager is not accepting new tasks")
        if task._status is not None:
            raise TaskExistsError(f"task {task.id} was already registered")
        key = task._key
        tasks = self._tasks
        if key in tasks:
            raise TaskExistsError(f"task {task.id} already exists")
        if self._ready.size + self._delayed.size >= self._max_tasks:
            raise QueueFullError(f"queue is full (max {self._max_tasks})")
        self._prepare(task)
        due = 0.0
        if task.run_at is not None:
            delay = utc_timestamp(task.run_at) - time.time()
            if delay > 0:
                due = asyncio.get_running_loop().time() + delay
        task._status = _QUEUED  # before the task becomes visible to a worker
        tasks[key] = task
        self._active += 1
        self._n_scheduled += 1
        tracer = self._tracer
        if tracer is not None:
            self._inject(tracer, task)
        if due:
            self._delayed.push(task, due)
            self._arm_delayed()
        else:
            self._ready.push(task)
            if self._idle:
                self._wake_one()
        if self._i_scheduled:
            for callback in self._i_scheduled:  # emit(), inline: once per task when metrics are on
                try:
                    callback(task)
                except Exception:
                    logger.exception("instrumentation callback %r raised; ignored", callback)
        hooks = self._hooks
        if hooks is not None and hooks.on_queued is not None:
            await call_hook("on_queued", hooks.on_queued, task)
        return task.id

    def _inject(self, tracer: TaskTracer, task: Task) -> None:
        metadata = task.metadata if task.metadata is not None else {}
        try:
            tracer.inject(metadata)
        except Exception:
            logger.warning("tracer inject raised for task %s; ignored", task.id, exc_info=True)
        task.metadata = metadata

    async def register_tasks(self, *tasks: Task) -> list[uuid.UUID]:
        """Register each task in turn; return the ids of those accepted.

        Raises:
            ExceptionGroup: one or more tasks were rejected (the others are registered).
        """
        return await register_each(self.register_task, tasks, "tasks")

    async def register_task_at(self, task: Task, run_at: datetime) -> uuid.UUID:
        """Register ``task`` to start no earlier than ``run_at`` (naive means UTC)."""
        if not isinstance(run_at, datetime):
            raise InvalidTaskError(f"run_at must be a datetime, got {type(run_at).__name__}")
        if not isinstance(task, Task):
            raise InvalidTaskError(f"expected a Task, got {type(task).__name__}")
        task.run_at = run_at
        return await self.register_task(task)

    async def register_task_after(self, task: Task, delay: float | timedelta) -> uuid.UUID:
        """Register ``task`` to start ``delay`` seconds from now (``<= 0``: as ``register_task``)."""
        value: object = delay  # checked as an object: a compiled build would see an int typed as float
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
        elif is_plain_int(value) or isinstance(value, float):
            seconds = float(value)  # type: ignore[arg-type]
        else:
            raise InvalidTaskError(f"delay must be seconds or a timedelta, got {type(value).__name__}")
        if not isinstance(task, Task):
            raise InvalidTaskError(f"expected a Task, got {type(task).__name__}")
        if seconds > 0:
            task.run_at = datetime.now(UTC) + timedelta(seconds=seconds)
        return await self.register_task(task)

    def _arm_delayed(self) -> None:
        """(Re)arm the one timer that moves due delayed tasks to the ready queues."""
        if not self._started or self._stopped:
            return
        due = self._delayed.next_due()
        timer = self._delayed_timer
        if due is None:
            if timer is not None:
                timer.cancel()
                self._delayed_timer = None
            return
        if timer is not None:
            if timer.when() <= due:
                return
            timer.cancel()
        assert self._loop is not None
        self._delayed_timer = self._loop.call_at(due, self._on_delayed_due)

    def _on_delayed_due(self) -> None:
        self._delayed_timer = None
        assert self._loop is not None
        for task in self._delayed.pop_due(self._loop.time()):
            self._ready.push(task)
            self._wake_one()
        self._arm_delayed()

    # ------------------------------------------------------------------------- control and lookup

    def _lookup(self, task_id: uuid.UUID) -> Task:
        if not isinstance(task_id, uuid.UUID):
            raise TaskNotFoundError(f"task id must be a uuid.UUID, got {type(task_id).__name__}")
        task = self._tasks.get(task_id.int)
        if task is None:
            raise TaskNotFoundError(f"task with ID {task_id} not found")
        return task

    async def cancel_task(self, task_id: uuid.UUID) -> None:
        """Cancel a queued, delayed, backing-off or running task; a finished task is left as it is.

        A running ``async`` task is interrupted at once; a running plain function sees
        ``ctx.cancelled`` set and ends when it returns.

        Raises:
            TaskNotFoundError: no task has this id.
        """
        task = self._lookup(task_id)
        status = task._status
        if status in TERMINAL_STATUSES:
            return
        if status is _RUNNING:
            if task._cancel_reason is None:
                self._interrupt(task, _CANCELLED)
            return
        if task._lease is not None and self._durable is not None:
            await self._durable.cancel_waiting(task)
            return
        self._ready.remove(task) or self._delayed.remove(task)
        await self._cancel_waiting(task)

    async def cancel_all(self) -> None:
        """Cancel every task that is not finished."""
        for task in list(self._tasks.values()):
            if task._status not in TERMINAL_STATUSES:
                await self.cancel_task(task.id)

    def get_task(self, task_id: uuid.UUID) -> Task:
        """The registered task with this id.

        Raises:
            TaskNotFoundError: no task has this id (or it was evicted by the retention policy).
        """
        return self._lookup(task_id)

    def get_tasks(self) -> list[Task]:
        """Every task in the registry, in registration order."""
        return list(self._tasks.values())

    async def execute_task(self, task_id: uuid.UUID, timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109 - pinned API
        """Run a waiting task now, in the caller, and return its result (or raise its error).

        The task leaves its queue (or its backoff), takes a rate-limiter token, and runs with
        ``timeout`` (else its own). Its outcome also goes the normal way: result published, retry
        scheduled when it fails and retries remain.

        Raises:
            TaskNotFoundError: no task has this id.
            TaskAlreadyStartedError: the task is running or finished.
            TaskCancelledError: the task was cancelled before or while it ran.
            TaskTimeoutError: the attempt ran past its timeout.
        """
        timeout_s = config_seconds(timeout, "timeout")
        task = self._lookup(task_id)
        if task._status not in (_QUEUED, _RETRYING):
            raise TaskAlreadyStartedError(f"task {task.id} already started")
        if not self._started or self._stopped:
            raise ManagerStoppedError("the task manager is not running")
        self._cancel_retry_timer(task)
        self._ready.remove(task) or self._delayed.remove(task)
        task._status = _QUEUED
        loop = asyncio.get_running_loop()
        limiter = self._limiter
        try:
            while limiter is not None and (wait_s := limiter.try_take(loop.time())):  # noqa: ASYNC110 - exact wait
                await asyncio.sleep(wait_s)
        except asyncio.CancelledError:
            if task._status is _QUEUED:
                self._ready.push(task)
                self._wake_one()
            raise
        if task._status is not _QUEUED:
            raise task._error or TaskCancelledError(f"task {task.id} was cancelled")
        me = asyncio.current_task()
        assert me is not None
        _, result, error = await self._run(task, timeout_s, me)
        if error is not None:
            raise error
        return result

    @property
    def max_workers(self) -> int:
        """How many tasks may run at once."""
        return self._max_workers

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of ``stop_now()``."""
        return self._started and not self._stopped

    def __repr__(self) -> str:
        return (
            f"TaskManager(max_workers={self._max_workers}, max_tasks={self._max_tasks}, "
            f"tasks={len(self._tasks)}, running={self.running})"
        )
