"""The runtime of one manager, composed of parts that each own their state.

``Engine`` builds the parts, wires them together and carries the operations that span several of them
(cancel, execute, the steps of a start; :class:`~worker_core._runtime.shutdown.Shutdown` has the steps of a
stop). It holds no task state of its own: the registry, the scheduler, the pool, the attempt runner, the
retries and the finisher do, each for its part.
The durable runtime talks to the engine's parts through a :class:`~worker_core._runtime.sink.DurableSink`.

Data flows one way: register -> scheduler -> pool -> attempt (own asyncio task) -> outcome -> retry timer or
finisher -> result bus, events, registry.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any, Final

from worker_core import task as records
from worker_core.durable.leased import LeasedTask
from worker_core.durable.outcomes import OutcomeConfigurableBackend
from worker_core.durable.registration import DurableRegistrar
from worker_core.durable.runtime import DurableRuntime
from worker_core.durable.types import DurableBackend, QueueConfigurableBackend
from worker_core.errors import (
    ManagerStoppedError,
    TaskAlreadyStartedError,
    TaskCancelledError,
    WorkerError,
)
from worker_core.events import EventPipeline
from worker_core.metrics import MetricsSnapshot
from worker_core.results import ResultBus
from worker_core.retention import DEFAULT_RETENTION
from worker_core.schedules.runner import ScheduleRunner
from worker_core.status import TERMINAL_STATUSES, TaskStatus
from worker_core.task import Task

from .attempt import CURRENT_CONTEXT, AttemptRunner
from .intake import Intake
from .outcomes import Finisher, Outcomes, Retries
from .pool import WorkerPool
from .processes import ProcessRunner
from .ratelimit import TokenBucket
from .registry import TaskRegistry
from .schedule_port import SchedulePort
from .scheduler import Scheduler
from .shutdown import Shutdown
from .sink import DurableSink
from .supervisor import Supervisor
from .threads import ThreadRunner

if TYPE_CHECKING:
    from worker_core.durable.config import DurableConfig
    from worker_core.options import ManagerOptions

__all__ = ("Engine",)

logger = logging.getLogger("worker_core.manager")

_QUEUED: Final = TaskStatus.QUEUED
_RUNNING: Final = TaskStatus.RUNNING
_RETRYING: Final = TaskStatus.RETRYING
_CANCELLED: Final = TaskStatus.CANCELLED
_time = time.time


class Engine:
    """The parts of one manager, and the operations that span them."""

    def __init__(
        self,
        options: ManagerOptions,
        durable: DurableConfig | None,
        schedule_tz: tzinfo = UTC,
        schedule_clock: Callable[[], float] | None = None,
    ) -> None:
        self.options = options
        self.events = EventPipeline()
        self.registry = TaskRegistry()
        self.registry.retention.set(DEFAULT_RETENTION, ())
        self.bus = ResultBus(self.events.dropped)
        self.supervisor = Supervisor()
        self.scheduler = Scheduler(options.queue_weights, self._became_ready)
        self.finisher = Finisher(self.registry, self.bus, self.events, self.supervisor.background)
        self.retries = Retries(self.scheduler, self.finisher, self.events, options.max_tasks, self._became_ready)
        self.outcomes = Outcomes(self.finisher, self.retries)
        self.threads = ThreadRunner()
        self.processes = (
            ProcessRunner(options.process_pool_size, self.threads) if options.plain_runner == "process" else None
        )
        self.pool = WorkerPool(self.scheduler.ready, options.max_workers)
        self.attempts = AttemptRunner(
            events=self.events,
            threads=self.threads,
            processes=self.processes,
            finisher=self.finisher,
            settle=self.outcomes.settle,
            release=self.pool.released,
            timeout_s=options.timeout_s,
        )
        self.pool.start_with(self.attempts.start)
        self.intake = Intake(options, self.registry, self.scheduler, self.pool, self.events)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.durable_config = durable
        self.registrar = (
            None if durable is None else DurableRegistrar(durable, options, self.events, self.intake.check_open)
        )
        self.durable: DurableRuntime | None = None
        self.schedules = ScheduleRunner(
            SchedulePort(self.intake, self.registrar, self.default_queue),
            tz=schedule_tz,
            clock=schedule_clock,
            backend=None if durable is None else durable.backend,
            notify=self.events.schedule_tick,
        )
        self.shutdown = Shutdown(
            intake=self.intake,
            supervisor=self.supervisor,
            scheduler=self.scheduler,
            pool=self.pool,
            attempts=self.attempts,
            outcomes=self.outcomes,
            retries=self.retries,
            finisher=self.finisher,
            registry=self.registry,
            bus=self.bus,
            threads=self.threads,
            processes=self.processes,
            config=durable,
            durable=lambda: self.durable,
        )

    # ------------------------------------------------------------------------------------------ intake

    def default_queue(self) -> str:
        """The queue of tasks registered with ``queue=""``: with a durable backend, its default unless given here."""
        durable = self.durable_config
        return self.options.default_queue if durable is None else durable.queues(self.options)[0]

    def _became_ready(self) -> None:
        pool = self.pool
        if pool.busy < pool.capacity:
            pool.kick()

    # ----------------------------------------------------------------------------------------- control

    async def cancel(self, task: Task[Any]) -> None:
        """Cancel a waiting, backing-off or running task; a finished one is left as it is."""
        status = task.status
        if status in TERMINAL_STATUSES:
            return
        durable = self.durable
        if status is _RUNNING:
            if isinstance(task, LeasedTask) and durable is not None:
                durable.policy.cancelled_by_user(task)
            self.attempts.interrupt(task, _CANCELLED)
            return
        if isinstance(task, LeasedTask) and durable is not None:
            await durable.cancel_waiting(task)
            return
        if not self.retries.take(task):
            self.scheduler.remove(task)
        pending = self.finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
        if pending is not None:
            await pending

    async def execute(self, task: Task[Any], timeout_s: float | None) -> Any:
        """Run a waiting task now, outside the worker slots; its result, or its error raised."""
        if task.status is not _QUEUED and task.status is not _RETRYING:
            raise TaskAlreadyStartedError(f"task {task.id} already started")
        if not self.intake.open:
            raise ManagerStoppedError("the task manager is not running")
        if not self.retries.take(task):
            self.scheduler.remove(task)
        records.requeue(task)
        limiter = self.pool.limiter
        loop = asyncio.get_running_loop()
        try:
            while limiter is not None and (wait_s := limiter.try_take(loop.time())):  # noqa: ASYNC110 - exact wait
                await asyncio.sleep(wait_s)
        except asyncio.CancelledError:
            if task.status is _QUEUED and self.intake.open:
                self.scheduler.ready.push(task)
                self._became_ready()
            raise
        if task.status is not _QUEUED:
            raise task.error or TaskCancelledError(f"task {task.id} was cancelled")
        if self._stopping():  # the manager began to stop while this waited for a token
            pending = self.finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            if pending is not None:
                await pending
            raise ManagerStoppedError("the task manager stopped before the task could run")
        runner = self.attempts.start(task, timeout_s, pooled=False)
        if not runner.done():
            try:
                await asyncio.shield(runner)
            except asyncio.CancelledError:
                self.attempts.give_up(task)  # the caller went away: so does the attempt (a thread is abandoned)
                raise
        outcome = runner.result()
        assert outcome is not None
        _, result, error = outcome
        if error is not None:
            raise error
        return result

    def _stopping(self) -> bool:
        return not self.intake.open

    def check_wait_allowed(self) -> None:
        """``wait()`` from inside one of this manager's in-memory tasks would wait for that task itself.

        Raises:
            WorkerError: it would.
        """
        ctx = CURRENT_CONTEXT.get(None)
        if ctx is not None and not ctx.task.durable and self.registry.get(records.key(ctx.task)) is ctx.task:
            raise WorkerError(
                "wait() inside a task of the same manager would wait for that task itself; "
                "await the results you need (subscribe_results) instead"
            )

    def within_own_task(self) -> bool:
        """Whether the caller runs inside an attempt of one of this manager's tasks."""
        ctx = CURRENT_CONTEXT.get(None)
        return ctx is not None and self.registry.get(records.key(ctx.task)) is ctx.task

    def metrics(self) -> MetricsSnapshot:
        finisher = self.finisher
        durable = self.durable
        registrar = self.registrar
        return MetricsSnapshot(
            scheduled=self.intake.scheduled + (registrar.scheduled if registrar is not None else 0),
            running=self.attempts.running,
            completed=finisher.completed,
            failed=finisher.failed,
            cancelled=finisher.cancelled,
            retried=self.retries.retried + (durable.policy.retried if durable is not None else 0),
            results_dropped=self.bus.dropped,
            queue_depth=self.scheduler.waiting,
            latency_count=finisher.lat_count,
            latency_total=finisher.lat_total,
            latency_max=finisher.lat_max,
            abandoned=self.shutdown.abandoned,
            abandoned_threads=self.threads.abandoned,
        )

    # ------------------------------------------------------------------------------------ start, stop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.intake.bind(loop)

    async def acquire(self) -> DurableBackend | None:
        """What a start must acquire before anything runs: the durable backend, connected (else ``None``).

        A failure or a cancellation leaves nothing open (a backend built here is closed again).
        """
        config = self.durable_config
        if config is None:
            return None
        try:
            return await config.open()
        except BaseException:
            await _quietly(config.close())
            raise

    def activate(
        self, loop: asyncio.AbstractEventLoop, context: contextvars.Context, backend: DurableBackend | None
    ) -> None:
        """Start every part (synchronously: nothing runs before the caller of ``start()`` resumes)."""
        options = self.options
        tps = options.tasks_per_second
        limiter = None if tps is None else TokenBucket(tps, min(options.max_workers, options.max_tasks), loop.time())
        self.supervisor.open(loop, context)
        self.attempts.open(loop, context)
        self.retries.open(loop)
        self.registry.retention.open(loop)
        self.scheduler.start(loop)
        config = self.durable_config
        if backend is not None and config is not None:
            default_queue, weights = config.queues(options)
            if isinstance(backend, QueueConfigurableBackend) and (
                options.default_queue_given or options.queue_weights_given
            ):  # otherwise the backend keeps the settings it was built with
                backend.configure_queues(default_queue, weights)
            if isinstance(backend, OutcomeConfigurableBackend):
                backend.configure_outcomes(config.options.result_ttl_s)
            sink = DurableSink(
                self.pool,
                self.scheduler,
                self.registry,
                self.finisher,
                self.events,
                self.intake,
                options,
                self.attempts,
            )
            durable = self.durable = DurableRuntime(sink, backend, config, default_queue=default_queue)
            self.outcomes.durable = durable.policy.settle  # type: ignore[assignment]
            if config.consumes():  # a producer with declarations only leases nothing
                _warn_without_renewal(config, options)
                durable.start()
                self.supervisor.supervise("durable-lease", durable.lease_loop)
                if durable.renewal_s is not None:
                    self.supervisor.supervise("durable-renewal", durable.renew_loop)
        self.pool.open(loop, context, limiter)
        self.schedules.open()
        self.supervisor.supervise("schedules", self.schedules.run)

    async def abort_open(self) -> None:
        """A start that failed after :meth:`open` began: release what it took."""
        if self.durable_config is not None:
            await _quietly(self.durable_config.close())


def _warn_without_renewal(config: DurableConfig, options: ManagerOptions) -> None:
    durable = config.options
    timeout_s = options.timeout_s
    if durable.renewal_s is None and (timeout_s is None or timeout_s > durable.lease_s):
        logger.info(
            "durable lease (%.1fs) is shorter than the task timeout (%s) and lease renewal is off: "
            "a task running longer than its lease is delivered again (durable_lease_renewal_interval=0 turns it off)",
            durable.lease_s,
            "none" if timeout_s is None else f"{timeout_s:.1f}s",
        )


async def _quietly(step: Coroutine[Any, Any, None]) -> None:
    try:
        await step
    except Exception:
        logger.warning("cleanup after a failed start failed", exc_info=True)
