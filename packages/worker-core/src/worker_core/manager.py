"""The public :class:`TaskManager`: prioritized, rate-limited, retried tasks on asyncio.

A thin facade: it checks arguments and hands each call to the part of the runtime that owns it
(``worker_core._runtime``: lifecycle, scheduler, worker pool, attempts, outcomes, registry; the durable
runtime under ``worker_core.durable``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Literal, ParamSpec, Self, TypeVar, Unpack, overload

from ._many import register_each
from ._runtime.engine import Engine
from ._runtime.lifecycle import Lifecycle, ManagerState
from .durable.access import DurableAccess
from .durable.config import DurableConfig, DurableOptions
from .durable.outcomes import DEFAULT_RECENT_OUTCOMES, DEFAULT_RESULT_TTL, RESULT_BYTES, TaskOutcome
from .durable.types import DurableBackend, DurableTask
from .errors import (
    ConfigurationError,
    DurableOnlyError,
    InvalidTaskError,
    ManagerStoppedError,
    TaskNotFoundError,
)
from .events import Pending
from .handles import LocalTasks, TaskHandle
from .hooks import TaskHooks
from .metrics import MetricsSnapshot
from .options import (
    DEFAULT_MAX_TASKS,
    DEFAULT_MAX_WORKERS,
    DEFAULT_STOP_TIMEOUT,
    ManagerOptions,
    config_int,
    config_seconds,
    start_at,
)
from .plugins import Plugins
from .protocols import TaskTracer
from .results import DropPolicy, ResultSubscription
from .retention import RetentionPolicy
from .schedules.entry import Factory, job_factory
from .schedules.spec import resolve_tz
from .schedules.types import MissedPolicy, ScheduleEvent, ScheduleInfo
from .submit import NO_OPTIONS, SubmitOptions, Submitter, build_task, checked_options, scheduled
from .task import Task

__all__ = ("ManagerState", "TaskManager")

_get_running_loop = asyncio.get_running_loop
P = ParamSpec("P")
T = TypeVar("T")


class TaskManager:
    """Runs tasks concurrently on asyncio: priorities, weighted queues, rate limit, retries, timeouts.

    Args:
        max_workers: Tasks running at once (default 10); ``None`` means the CPU count.
        max_tasks: Most tasks waiting to start (queued, delayed); more raise :class:`QueueFullError`.
        tasks_per_second: Start rate (token bucket, burst ``min(max_workers, max_tasks)``, every attempt
            takes a token); ``None`` (the default) or ``<= 0`` means no rate limit.
        timeout: Default seconds per attempt; ``None`` means no default timeout.
        retry_delay: Default base backoff in seconds.
        max_retries: Default retries, and the most a task may ask for.
        default_queue: Queue of tasks registered with ``queue=""``. Not given: ``"default"``, or with a durable
            backend the default queue the backend was built with (``memory://?default_queue=jobs``, say).
        queue_weights: Share of starts per queue (weighted round robin); missing queues weigh 1. Not given:
            none, or with a durable backend the weights the backend was built with. A value given here
            overrides the backend's own at start.
        stop_timeout: Seconds a stop waits for cancelled attempts, threads and hooks before it gives up on
            them (they are reported in the log and in ``metrics().abandoned``).
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
        durable_lease_renewal_interval: Extend every held lease this often, in one backend call (``None``,
            the default: a third of ``durable_lease``; ``0``: never; at most ``durable_lease / 2``).
        durable_result_ttl: Seconds a finished durable task's outcome (status, result, error) is kept by a
            backend that stores results, for ``handle(id)`` in any process; ``None`` or ``0``: not stored.
        durable_result_max_bytes: Largest result (encoded as JSON) a stored outcome keeps (default 1 MiB); a
            larger one is not stored, and awaiting it raises ``ResultNotStoredError`` (the task completed).
        plugins: The plugins to resolve backend URLs and codec names with (loaded on first use if omitted).
        cron_tz: Time zone cron schedules are evaluated in unless they name one (go-worker's WithCronLocation).
        schedule_clock: Epoch seconds for schedules (default ``time.time``; tests inject a skewed clock).
        plain_runner: Where plain (non-``async``) task functions run: ``"thread"`` (the default: worker threads,
            one interpreter, the GIL) or ``"process"`` (a pool of spawned worker processes, for CPU-bound work:
            the function, its arguments and its result are pickled; see the README's "CPU-bound functions").
        process_pool_size: Pool processes with ``plain_runner="process"`` (``None``: the CPU count).

    Raises:
        ConfigurationError: a value of the wrong type or out of range.

    The constructor does no I/O and needs no running loop. ``async with TaskManager(...) as tm:``
    starts it and stops it gracefully (``stop_now`` when the block raises). A manager belongs to the event
    loop it is first used on; call it from that loop (``register_task_threadsafe`` from other threads).
    """

    def __init__(
        self,
        max_workers: int | None = DEFAULT_MAX_WORKERS,
        max_tasks: int = DEFAULT_MAX_TASKS,
        tasks_per_second: float | None = None,
        timeout: float | timedelta | None = 300.0,
        retry_delay: float | timedelta = 1.0,
        max_retries: int = 3,
        *,
        default_queue: str | None = None,
        queue_weights: Mapping[str, int] | None = None,
        stop_timeout: float | timedelta = DEFAULT_STOP_TIMEOUT,
        durable_backend: DurableBackend | str | None = None,
        durable_handlers: Any = None,
        durable_codec: Any = None,
        durable_lease: float | timedelta = 30.0,
        durable_poll_interval: float | timedelta = 0.2,
        durable_batch_size: int | None = None,
        durable_lease_renewal_interval: float | timedelta | None = None,
        durable_result_ttl: float | timedelta | None = DEFAULT_RESULT_TTL,
        durable_result_max_bytes: int = RESULT_BYTES,
        plugins: Plugins | None = None,
        cron_tz: str | tzinfo = "UTC",
        schedule_clock: Callable[[], float] | None = None,
        plain_runner: Literal["thread", "process"] = "thread",
        process_pool_size: int | None = None,
    ) -> None:
        options = ManagerOptions.build(
            max_workers=max_workers,
            max_tasks=max_tasks,
            tasks_per_second=tasks_per_second,
            timeout=timeout,
            retry_delay=retry_delay,
            max_retries=max_retries,
            default_queue=default_queue,
            queue_weights=queue_weights,
            stop_timeout=stop_timeout,
            plain_runner=plain_runner,
            process_pool_size=process_pool_size,
        )
        if plugins is not None and not isinstance(plugins, Plugins):
            raise ConfigurationError("plugins must be a worker_core.Plugins")
        self._plugins = plugins
        durable = None
        if durable_backend is not None:
            durable_options = DurableOptions(
                durable_backend,
                durable_handlers,
                durable_codec,
                durable_lease,
                durable_poll_interval,
                durable_batch_size,
                durable_lease_renewal_interval,
                durable_result_ttl,
                durable_result_max_bytes,
            )
            durable = DurableConfig(durable_options, lambda: self.plugins)
        self._engine = Engine(options, durable, resolve_tz(cron_tz), schedule_clock)
        self._lifecycle = Lifecycle(self._engine, options.stop_timeout_s)
        self._local = LocalTasks(self._engine.bus, self.cancel_task, self._lifecycle.bind)
        self._durable = DurableAccess(durable, self._engine.registrar, self._engine.default_queue)

    @classmethod
    def with_defaults(cls) -> Self:
        """A manager with go-worker's defaults: CPU-count workers, 10 tasks, 5/s, 5 min, 1 s, 3 retries."""
        return cls(max_workers=None, max_tasks=10, tasks_per_second=5.0)

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the workers on the running loop; idempotent, and concurrent calls share one start.

        With a durable backend, ``start`` resolves it, connects it when it has ``connect()`` and picks every
        handler's codec, so a bad URL, wrong credentials or an unreachable store fail here. Cancelled while
        it waits (and no other caller waits for the same start), the start is undone: the manager is new
        again.

        Raises:
            ManagerStoppedError: the manager was stopped, or is stopped while it starts.
            WrongLoopError: the manager belongs to another event loop.
            ConfigurationError: the durable backend or a codec cannot be set up (unknown scheme, bad credentials).
            BackendUnavailableError: the durable backend cannot be reached.
        """
        await self._lifecycle.start()

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
        """Wait until every registered in-memory task is terminal (its result published, its hooks done).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            WorkerError: called from inside one of this manager's own tasks (it would wait for itself).
        """
        timeout_s = config_seconds(timeout, "timeout", allow_zero=True)
        self._lifecycle.bind()
        self._engine.check_wait_allowed()
        await self._engine.registry.wait(timeout_s)

    async def stop_graceful(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109 - pinned API
        """Stop intake, let queued and running tasks finish (for up to ``timeout`` seconds), then stop.

        Durable: nothing more is leased, leases of tasks that have not started are handed back, running ones
        finish. Past ``timeout`` what is left is cancelled, as :meth:`stop_now` does (bounded by the
        manager's ``stop_timeout``). Called from inside one of the manager's own tasks, it starts the stop and
        returns at once (the stop completes when that task has finished). A cancelled caller stops waiting;
        the stop goes on.

        Raises:
            TimeoutError: ``timeout`` passed first; what was left has been cancelled and the manager
                is stopped all the same.
        """
        await self._lifecycle.stop_graceful(config_seconds(timeout, "timeout", allow_zero=True))

    async def stop_now(self, timeout: float | timedelta | None = None) -> None:  # noqa: ASYNC109
        """Cancel everything and stop; idempotent, and concurrent calls share one stop.

        Returns once every attempt has ended, or once ``timeout`` (default: the manager's ``stop_timeout``)
        has passed: then what still runs (a plain function that ignores ``ctx.cancelled``, a task that
        swallows its cancellation, a hook that hangs) is finished ``CANCELLED``, left to itself, logged and
        counted in ``metrics().abandoned``. Called from inside one of the manager's own tasks, that task is
        cancelled too. A cancelled caller stops waiting; the stop goes on.
        """
        await self._lifecycle.stop_now(config_seconds(timeout, "timeout", allow_zero=True))

    def set_max_workers(self, n: int) -> None:
        """Change how many tasks may run at once; ``0`` pauses starting new ones.

        Shrinking lets the running tasks finish; no new one starts until fewer than ``n`` run.

        Raises:
            ConfigurationError: ``n`` is negative or not an int.
        """
        self._engine.pool.set_capacity(config_int(n, "max_workers", 0))

    @property
    def max_workers(self) -> int:
        """How many tasks may run at once."""
        return self._engine.pool.capacity

    @property
    def running(self) -> bool:
        """True from the end of ``start()`` until the stop completes, while the manager's loop is open."""
        return self._lifecycle.running

    @property
    def state(self) -> ManagerState:
        """Where the manager is in its lifecycle."""
        return self._lifecycle.state

    # ---------------------------------------------------------------------------------- registration

    async def register_task(self, task: Task[Any]) -> uuid.UUID:
        """Queue ``task``; return its id.

        Raises:
            InvalidTaskError: ``task`` is not a :class:`Task`, one of its fields is invalid, or it asks for
                more retries than ``max_retries``.
            TaskExistsError: a task with this id is registered (or this object already was).
            QueueFullError: ``max_tasks`` tasks are already waiting to start.
            ManagerStoppedError: the manager is stopping or stopped.
            DurableOnlyError: a durable backend is configured.
            WrongLoopError: the manager belongs to another event loop.
        """
        pending = self._register(task)
        if pending is not None:
            await pending
        return task.id

    def _register(self, task: Task[Any]) -> Pending:
        """``register_task`` up to its hook: what is left to await, if anything."""
        if type(task) is not Task and not isinstance(task, Task):
            raise InvalidTaskError(f"expected a Task, got {type(task).__name__}")
        if _get_running_loop() is not self._lifecycle.loop:
            self._lifecycle.bind()
        engine = self._engine
        if engine.registrar is not None:
            raise DurableOnlyError("durable backend enabled; use register_durable_task")
        return engine.intake.register(task)

    async def register_tasks(self, *tasks: Task[Any]) -> list[uuid.UUID]:
        """Register each task in turn; return the ids of those accepted.

        Raises:
            ExceptionGroup: one or more tasks were rejected (the others are registered).
        """
        return await register_each(self.register_task, tasks, "tasks")

    async def register_task_at(self, task: Task[Any], run_at: datetime) -> uuid.UUID:
        """Register ``task`` to start no earlier than ``run_at`` (a naive datetime is local time)."""
        return await self.register_task(scheduled(task, Task, start_at(run_at)))

    async def register_task_after(self, task: Task[Any], delay: float | timedelta) -> uuid.UUID:
        """Register ``task`` to start ``delay`` seconds from now (``<= 0``: as ``register_task``)."""
        return await self.register_task(scheduled(task, Task, start_at(delay=delay), keep=True))

    def register_task_threadsafe(self, task: Task[Any]) -> concurrent.futures.Future[uuid.UUID]:
        """Register ``task`` from any thread; a future with its id (or the error ``register_task`` raised).

        The registration runs on the manager's loop at its next turn (``call_soon_threadsafe`` underneath),
        so the task starts as promptly as one registered there.

        Raises:
            ManagerStoppedError: the manager was never used on a loop, or its loop is closed.
        """
        loop = self._lifecycle.loop
        if loop is None or loop.is_closed():
            raise ManagerStoppedError("the task manager has no running event loop to register on")
        return asyncio.run_coroutine_threadsafe(self.register_task(task), loop)

    # ------------------------------------------------------------------------- control and lookup

    async def cancel_task(self, task_id: uuid.UUID) -> None:
        """Cancel a queued, delayed, backing-off or running task; a finished task is left as it is.

        A running ``async`` task is interrupted at once; a running plain function sees ``ctx.cancelled`` set
        and ends when it returns (or at its deadline, when its thread is abandoned).

        Raises:
            TaskNotFoundError: no task has this id.
        """
        task = self._engine.registry.lookup(task_id)
        self._lifecycle.bind()
        await self._engine.cancel(task)

    async def cancel_all(self) -> None:
        """Cancel every task that is not finished."""
        self._lifecycle.bind()
        for task in self._engine.registry.tasks():
            await self._engine.cancel(task)

    def get_task(self, task_id: uuid.UUID) -> Task[Any]:
        """The registered task with this id.

        Raises:
            TaskNotFoundError: no task has this id (or it was evicted by the retention policy).
        """
        return self._engine.registry.lookup(task_id)

    def get_tasks(self) -> list[Task[Any]]:
        """Every task in the registry, in registration order."""
        return self._engine.registry.tasks()

    @overload
    async def execute_task(self, task_id: TaskHandle[T], timeout: float | timedelta | None = None) -> T: ...  # noqa: ASYNC109

    @overload
    async def execute_task(self, task_id: uuid.UUID, timeout: float | timedelta | None = None) -> Any: ...  # noqa: ASYNC109

    async def execute_task(self, task_id: uuid.UUID | TaskHandle[Any], timeout: float | timedelta | None = None) -> Any:  # noqa: ASYNC109 - pinned API
        """Run a waiting task now, outside the worker slots, and return its result (or raise its error).

        ``task_id`` may be the task's :class:`~worker_core.TaskHandle` (the result is then typed).

        The task leaves its queue (or its backoff), takes a rate-limiter token, and runs with ``timeout``
        (else its own) in its own asyncio task. Its outcome also goes the normal way: result published, retry
        scheduled when it fails and retries remain. Cancelling the caller cancels the attempt.

        Raises:
            TaskNotFoundError: no task has this id.
            TaskAlreadyStartedError: the task is running or finished.
            TaskCancelledError: the task was cancelled before or while it ran.
            TaskTimeoutError: the attempt ran past its timeout.
            ManagerStoppedError: the manager is not running.
        """
        timeout_s = config_seconds(timeout, "timeout")
        task = self._engine.registry.lookup(task_id.id if isinstance(task_id, TaskHandle) else task_id)
        self._lifecycle.bind()
        if not self.running:
            raise ManagerStoppedError("the task manager is not running")
        return await self._engine.execute(task, timeout_s)

    # ------------------------------------------------------------------------------- handles and submit

    @overload
    async def submit(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    @overload
    async def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    async def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[Any]:
        """Run ``fn(*args, **kwargs)`` as a task; its :class:`~worker_core.TaskHandle` (``await`` it for the result).

        An ``async def`` runs in its own asyncio task, a plain function in the thread pool; ``fn`` takes no
        ``ctx`` (:func:`~worker_core.current_context` gives it). The task has the options ``fn`` was
        declared with (:func:`~worker_core.define_task`), else the manager's defaults; ``with_options(...)``
        gives per-call ones.

        Raises:
            InvalidTaskError, QueueFullError, ManagerStoppedError, DurableOnlyError, WrongLoopError: as
                ``register_task``.
        """
        task = build_task(fn, args, kwargs, NO_OPTIONS)
        pending = self._register(task)
        if pending is not None:
            await pending
        return self._local.handle(task)

    def with_options(self, **options: Unpack[SubmitOptions]) -> Submitter:
        """A submitter whose ``submit(fn, *args, **kwargs)`` gives the task these options.

        ``priority``, ``queue``, ``weight``, ``retries``, ``retry_delay``, ``timeout``, ``run_at`` or
        ``delay``, ``id``, ``name``, ``description``, ``metadata``: see :class:`~worker_core.SubmitOptions`.

        Raises:
            TypeError: an unknown option name.
            InvalidTaskError: an option value of the wrong type or range.
        """
        return Submitter(self._register, self._local.handle, checked_options(options, "with_options"))

    def handle(self, task_id: uuid.UUID) -> TaskHandle[Any]:
        """A handle on the task with this id.

        A task this manager holds is read from the task itself. With a durable backend that stores results
        (``ResultStoreBackend``), any other id is a durable task read from the result store: awaiting the
        handle waits until some node finishes it (the manager need not be started). A durable task this
        manager holds is awaited on the store too (its status is the local one while it runs here): the
        store knows how it ended wherever it ran, and a handle on a task replayed after it failed here
        waits for the new run instead of raising the old error.

        Raises:
            TaskNotFoundError: no task has this id here (or it was evicted by the retention policy) and the
                durable backend, if any, stores no results.
        """
        if not isinstance(task_id, uuid.UUID):
            raise TaskNotFoundError(f"task id must be a uuid.UUID, got {type(task_id).__name__}")
        return self._durable.handle(task_id, self._engine.registry.get(task_id.int), self._local)

    async def durable_outcome(self, task_id: uuid.UUID, *, wait: float | timedelta | None = 0.0) -> TaskOutcome | None:
        """The stored outcome of a finished durable task (kept for ``durable_result_ttl``), or ``None``.

        ``wait`` is how long to wait for it to be stored: ``0`` (default) not at all, ``None`` for as long as
        it takes; ``None`` is returned when it passed first.

        Raises:
            ConfigurationError: no durable backend, one that stores no results, or a bad ``wait``.
        """
        return await self._durable.outcome(task_id, wait)

    async def recent_outcomes(self, queue: str = "", limit: int = DEFAULT_RECENT_OUTCOMES) -> list[TaskOutcome]:
        """The durable tasks of ``queue`` (default: the default queue) that finished last, newest first.

        Raises:
            ConfigurationError: no durable backend, or one that stores no results.
        """
        return await self._durable.recent(queue, config_int(limit, "limit", 1))

    # ----------------------------------------------------------------------------------- results, settings

    def subscribe_results(self, buffer: int = 10) -> ResultSubscription:
        """Receive every result published from now on; see :class:`ResultSubscription`.

        Raises:
            ConfigurationError: ``buffer`` is not an int >= 1.
        """
        size = config_int(buffer, "buffer", 1)
        return self._engine.bus.subscribe(size, closed=self._lifecycle.state is ManagerState.STOPPED)

    def get_results(self) -> ResultSubscription:
        """Compatibility shim for go-worker's ``GetResults``: ``subscribe_results(10)``."""
        return self.subscribe_results(10)

    def set_results_drop_policy(self, policy: DropPolicy) -> None:
        """What a full subscriber buffer drops: the new result (default) or the oldest buffered one.

        Raises:
            ConfigurationError: ``policy`` is not a :class:`DropPolicy`.
        """
        self._engine.bus.set_drop_policy(policy)

    def set_retention_policy(self, policy: RetentionPolicy | None) -> None:
        """Evict finished tasks by TTL and count (``None``: keep everything); prunes at once.

        A new manager keeps the 10,000 most recently finished tasks (``retention.DEFAULT_RETENTION``).

        Raises:
            ConfigurationError: a value is out of range.
        """
        self._engine.registry.set_retention(policy)

    def set_hooks(self, hooks: TaskHooks | None) -> None:
        """Use ``hooks`` from now on (``None`` removes them).

        Raises:
            ConfigurationError: ``hooks`` is not a :class:`TaskHooks`.
        """
        self._engine.events.set_hooks(hooks)

    def set_tracer(self, tracer: TaskTracer | None) -> None:
        """Trace every attempt with ``tracer`` (``None`` turns tracing off).

        Raises:
            ConfigurationError: ``tracer`` lacks ``start`` or ``inject``.
        """
        self._engine.events.set_tracer(tracer)

    def add_instrumentation(self, instrumentation: object) -> None:
        """Receive task events (see :class:`~worker_core.protocols.Instrumentation`); worker-otel uses it."""
        self._engine.events.add_instrumentation(instrumentation)

    def remove_instrumentation(self, instrumentation: object) -> None:
        """Stop sending events to ``instrumentation``; unknown objects are ignored."""
        self._engine.events.remove_instrumentation(instrumentation)

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of the counters."""
        return self._engine.metrics()

    def queue_depths(self) -> dict[str, int]:
        """Ready tasks per queue, for the queues that have any (delayed tasks not included)."""
        return self._engine.scheduler.ready.depths()

    # ------------------------------------------------------------------------------------- plugins

    @property
    def plugins(self) -> Plugins:
        """This manager's plugins (loaded on first use: entry points, built-ins, environment switches)."""
        if self._plugins is None:
            self._plugins = Plugins()
        return self._plugins

    def use_plugin_instrumentation(self, name: str, **options: Any) -> None:
        """Bind this manager to the instrumentation a plugin registered as ``name``.

        Plugins register binders through the ``worker_register_instrumentation`` hook; with worker-otel
        installed, ``tm.use_plugin_instrumentation("otel", provider=meter_provider)`` exports the metrics
        (``provider=None`` unbinds). The binder decides what ``options`` mean.

        Raises:
            ConfigurationError: no plugin registered ``name`` (the error names those that did), or the
                binder rejected ``options``.
        """
        binder = self.plugins.instrumentation().get(name)
        try:
            binder(self, **options)
        except TypeError as exc:
            raise ConfigurationError(f"instrumentation {name!r}: {exc}") from exc

    # ------------------------------------------------------------------------------------- durable

    @property
    def durable(self) -> bool:
        """True when a durable backend is configured."""
        return self._durable.enabled

    def durable_backend(self) -> DurableBackend:
        """The backend object (a URL is resolved through the backend plugins on first use).

        Raises:
            ConfigurationError: no backend configured, or an unknown URL scheme (the message names those installed).
        """
        return self._durable.backend()

    async def register_durable_task(self, task: DurableTask) -> uuid.UUID:
        """Encode and enqueue ``task`` on the durable backend; return its id.

        With ``message`` the codec encodes it; with ``payload`` only, the bytes are decoded once to check them.

        Raises:
            ConfigurationError: no durable backend is configured.
            InvalidTaskError: ``task`` is not a :class:`DurableTask`, a field is invalid, or it asks for more
                retries than ``max_retries``.
            HandlerNotFoundError: no handler has this name.
            PayloadError: neither payload nor message, or they cannot be encoded/decoded.
            DurableTaskExistsError: the backend already holds a task with this id.
            ManagerStoppedError: the manager is stopping or stopped.
            BackendError: the backend failed (``BackendUnavailableError`` when unreachable).
        """
        return await self._durable.register(task)

    async def register_durable_tasks(self, *tasks: DurableTask) -> list[uuid.UUID]:
        """Register the durable tasks; the ids of those accepted, in order; the rejected ones are raised together.

        Every task is checked and encoded as :meth:`register_durable_task` does. When the backend is a
        :class:`~worker_core.durable.BatchEnqueueBackend`, the valid tasks then go to it in one
        ``enqueue_many`` call (the Redis backend: one round trip per 500 tasks) instead of one ``enqueue``
        each: a task whose id is already stored, or repeats an earlier task of the call, is rejected with
        :class:`~worker_core.errors.DurableTaskExistsError` and the others are registered; any other error of
        that call rejects every task it carried (the backend may have stored some of them: registering them
        again reports those as duplicates). Other backends get one ``enqueue`` per task.

        Raises:
            ExceptionGroup: one or more tasks were rejected (the others are enqueued); the errors are those
                of :meth:`register_durable_task`, in the order the tasks were given.
        """
        return await self._durable.register_many(tasks)

    async def register_durable_task_at(self, task: DurableTask, run_at: datetime) -> uuid.UUID:
        """Register ``task`` to be delivered no earlier than ``run_at`` (a naive datetime is local time)."""
        return await self.register_durable_task(scheduled(task, DurableTask, start_at(run_at)))

    async def register_durable_task_after(self, task: DurableTask, delay: float | timedelta) -> uuid.UUID:
        """Register ``task`` to be delivered ``delay`` seconds from now (``<= 0``: at once)."""
        return await self.register_durable_task(scheduled(task, DurableTask, start_at(delay=delay), keep=True))

    # ------------------------------------------------------------------------------------- schedules

    def register_cron_task(
        self, name: str, spec: str | timedelta, factory: Factory, *, tz: str | tzinfo | None = None
    ) -> None:
        """Run ``factory()``'s :class:`Task` (sync or async factory) on schedule ``spec``, in process.

        ``spec``: a cron expression (5 fields, or 6 with seconds first), ``@hourly``/``@daily``/..., ``@every
        1m30s`` or a ``timedelta``; evaluated in ``tz`` (default: the manager's ``cron_tz``). A tick while the
        manager does not accept work is skipped. See the README's "Schedules".

        Raises:
            DurableOnlyError: a durable backend is configured (use :meth:`register_durable_cron_task`).
            ScheduleExistsError: a schedule with this name is registered.
            ScheduleSpecError: a bad spec or time zone. ConfigurationError: a bad name or factory.
        """
        if self.durable:
            raise DurableOnlyError("durable backend enabled; use register_durable_cron_task")
        self._engine.schedules.register(name, spec, factory, durable=False, tz=tz, missed="skip", tick_ttl=None)

    def register_durable_cron_task(
        self,
        name: str,
        spec: str | timedelta,
        factory: Factory,
        *,
        tz: str | tzinfo | None = None,
        missed: MissedPolicy = "skip",
        tick_ttl: float | timedelta | None = None,
    ) -> None:
        """Enqueue ``factory()``'s :class:`DurableTask` once per tick of ``spec``, whichever nodes run it.

        Every node that registers the same ``name`` fires its ticks; the backend keeps one task per tick (see
        :class:`~worker_core.schedules.ScheduleBackend`). ``missed``: ``"skip"`` ticks that passed while no node
        ran, or run ``"once"`` at start for the latest. ``tick_ttl``: how long a tick's marker is kept (default:
        three periods, at least 60 s: longer than any clock skew between nodes).

        Raises:
            ConfigurationError: no durable backend; a bad name, factory or ``missed``.
            ScheduleExistsError, ScheduleSpecError: as :meth:`register_cron_task`.
        """
        self._durable.registrar()  # raises without a durable backend
        self._engine.schedules.register(name, spec, factory, durable=True, tz=tz, missed=missed, tick_ttl=tick_ttl)

    def unregister_cron_task(self, name: str) -> bool:
        """Remove the schedule ``name`` from this manager; False when it has none by this name."""
        return self._engine.schedules.unregister(name)

    def cron(
        self, spec: str | timedelta, *, name: str | None = None, tz: str | tzinfo | None = None
    ) -> Callable[[JobT], JobT]:
        """Decorator: run a job of no arguments (a plain function or a ``define_task`` declaration) on ``spec``.

        ``@tm.cron("*/5 * * * *")`` registers it as :meth:`register_cron_task` does (named after the function
        unless ``name`` is given) and returns it unchanged.
        """

        def register(job: JobT) -> JobT:
            default, factory = job_factory(job)
            self.register_cron_task(name or default, spec, factory, tz=tz)
            return job

        return register

    def every(self, interval: timedelta, *, name: str | None = None) -> Callable[[JobT], JobT]:
        """Decorator: run a job of no arguments every ``interval`` (ticks are multiples of it since the epoch)."""
        return self.cron(interval, name=name)

    async def schedules(self, upcoming: int = 3) -> list[ScheduleInfo]:
        """Every schedule of this manager: spec, zone, next ``upcoming`` runs, last run and outcome, paused.

        For durable schedules the paused flag and the last run are read from the backend (any node's).
        """
        return await self._engine.schedules.infos(config_int(upcoming, "upcoming", 0))

    async def pause_schedule(self, name: str) -> None:
        """Skip the ticks of ``name`` until resumed (durable: on every node). Raises ScheduleNotFoundError."""
        await self._engine.schedules.set_paused(name, True)

    async def resume_schedule(self, name: str) -> None:
        """Fire the ticks of ``name`` again. Raises ScheduleNotFoundError."""
        await self._engine.schedules.set_paused(name, False)

    async def trigger_schedule(self, name: str) -> None:
        """Run ``name`` once now, besides its ticks (durable: exactly one node takes the request)."""
        await self._engine.schedules.trigger(name)

    async def schedule_events(self, name: str, limit: int = 20) -> list[ScheduleEvent]:
        """The latest events of ``name`` (fired, skipped, failed, ...), newest first."""
        return await self._engine.schedules.events(name, config_int(limit, "limit", 1))

    def __repr__(self) -> str:
        return (
            f"TaskManager(max_workers={self.max_workers}, max_tasks={self._engine.options.max_tasks}, "
            f"tasks={len(self._engine.registry)}, state={self.state.value})"
        )


JobT = TypeVar("JobT", bound=Callable[[], Any])
