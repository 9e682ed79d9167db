"""The runtime of one manager, composed of parts that each own their state.

``Engine`` builds the parts, wires them together and carries the operations that span several of them
(register, cancel, execute, the steps of a start and a stop). It holds no task state of its own: the
registry, the scheduler, the pool, the attempt runner, the retries and the finisher do, each for its part.
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
_HOOK_BATCH = 64  # async on_finish hooks of tasks cancelled by a stop run this many at a time
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
        self.abandoned = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.durable_config = durable
        self.registrar = (
            None if durable is None else DurableRegistrar(durable, options, self.events, self.intake.check_open)
        )
        self.durable: DurableRuntime | None = None
        self.schedules = ScheduleRunner(
            SchedulePort(self.intake, self.registrar, options.default_queue),
            tz=schedule_tz,
            clock=schedule_clock,
            backend=None if durable is None else durable.backend,
            notify=self.events.schedule_tick,
        )
        self._stop_hooks: list[Coroutine[Any, Any, None]] = []  # on_finish hooks of tasks a stop cancelled

    # ------------------------------------------------------------------------------------------ intake

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
            abandoned=self.abandoned,
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
            if isinstance(backend, QueueConfigurableBackend):
                backend.configure_queues(options.default_queue, dict(options.queue_weights))
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
            durable = self.durable = DurableRuntime(sink, backend, config, default_queue=options.default_queue)
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

    def begin_stop(self, *, now: bool) -> None:
        """The synchronous first step of a stop, before any ``await``.

        Intake closes and nothing is leased any more; with ``now``, every timer stops and everything waiting
        or running is cancelled too.
        """
        self.intake.close()
        self.supervisor.stop_restarts()
        durable = self.durable
        if durable is not None:
            durable.stop_leasing()
        if not now:
            return
        self.outcomes.retrying = False
        self.pool.close()
        self.scheduler.stop()
        self.registry.retention.close()
        # Leased tasks waiting for a worker stay held: their leases are handed back at the end of the stop.
        cancelled = [task for task in self.scheduler.drain() if not task.durable] + self.retries.stop()
        for task in self.registry.tasks():  # tasks between two states (execute_task waiting for a token)
            if task.status is _QUEUED and not task.durable:
                cancelled.append(task)
        finisher = self.finisher
        for task in cancelled:
            pending = finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            if pending is not None:
                self._stop_hooks.append(pending)
        for task in self.registry.running():
            self.attempts.interrupt(task, _CANCELLED)

    async def drain(self) -> None:
        """Graceful stop: lease nothing more, hand back unstarted leases, let queued and running work finish."""
        durable = self.durable
        if durable is not None:
            await self._let_dequeue_finish(durable.in_dequeue, self.durable_config.options.lease_s)  # type: ignore[union-attr]
            await durable.release(durable.take_unstarted())
            await durable.until_idle()
        if self.pool.capacity == 0:
            await self._cancel_unstartable()
        await self.registry.wait(None)

    async def _cancel_unstartable(self) -> None:
        """No worker slot (``set_max_workers(0)``): waiting tasks would never start, so the drain cancels them."""
        self.outcomes.retrying = False  # a retry could never start either: a failure now finishes its task
        waiting = [task for task in self.scheduler.drain() if not task.durable] + self.retries.stop()
        if not waiting:
            return
        logger.warning("graceful stop with max_workers=0: %d waiting task(s) can never start; cancelled", len(waiting))
        finisher = self.finisher
        for task in waiting:
            pending = finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            if pending is not None:
                await pending

    async def _let_dequeue_finish(self, in_dequeue: bool, limit_s: float) -> None:
        """A dequeue in flight may have leased tasks: let it finish (up to ``limit_s``) rather than cut it."""
        if not in_dequeue:
            return
        lease_loop = self.supervisor.task("durable-lease")
        if lease_loop is not None:
            await asyncio.wait({lease_loop}, timeout=limit_s)

    async def halt(self, bound_s: float) -> None:
        """The rest of a stop, after :meth:`begin_stop` with ``now``.

        Waits for what was cancelled up to ``bound_s``, gives up on what is left (reported), hands leases
        back and releases every resource. Never raises, not even when cancelled: a cancellation only ends
        the waiting early.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound_s
        if self._stop_hooks:
            hooks, self._stop_hooks = self._stop_hooks, []
            self.supervisor.background(_run_in_batches(hooks))
        durable = self.durable
        if durable is not None and durable.in_dequeue:
            await _bounded(self._let_dequeue_finish(True, max(0.0, deadline - loop.time())))
        await _bounded(_wait_all(self._pending, deadline))
        self._give_up(loop)
        loops = self.supervisor.close()
        await _bounded(_wait_all(lambda: {task for task in loops if not task.done()}, loop.time() + 1.0))
        if durable is not None:
            await _bounded(durable.release_held())
        if self.durable_config is not None:
            await _bounded(self.durable_config.close())
        self.threads.close()
        if self.processes is not None:
            self.processes.close()
        self.attempts.close()
        self.bus.close()

    def _pending(self) -> set[asyncio.Task[Any]]:
        return self.attempts.runners() | self.supervisor.pending_background()

    def _give_up(self, loop: asyncio.AbstractEventLoop) -> None:
        """Past the stop's bound: stop waiting for what still runs, finish its tasks, count and log it.

        An attempt still running (a plain function that ignores ``ctx.cancelled``, code that swallows its
        cancellation) is finished ``CANCELLED`` and its code left to itself (a thread is abandoned); an attempt
        stuck in a hook after its task finished, and a hook of a task the stop cancelled, are cancelled once
        more and left.
        """
        stuck = list(self.registry.running())
        if stuck:
            shown = ", ".join(str(task.id) for task in stuck[:5])
            more = f" and {len(stuck) - 5} more" if len(stuck) > 5 else ""
            logger.warning("%d tasks still running past the stop's bound, abandoned: %s%s", len(stuck), shown, more)
        for task in stuck:
            self.attempts.give_up(task)
            self.finisher.finish_now(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
        left = self._pending()
        for job in left:
            job.cancel()
        if len(left) > len(stuck):
            logger.warning("%d task hooks still running past the stop's bound: abandoned", len(left) - len(stuck))
        self.abandoned += max(len(stuck), len(left))


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


async def _wait_all(pending: Callable[[], set[asyncio.Task[Any]]], deadline: float) -> None:
    """Wait until ``pending()`` is empty or the loop clock reaches ``deadline``."""
    loop = asyncio.get_running_loop()
    while (tasks := pending()) and (left := deadline - loop.time()) > 0:
        await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)


async def _bounded(step: Coroutine[Any, Any, None]) -> None:
    """Run one step of a stop; a cancellation ends the step (the stop goes on), any error is logged."""
    try:
        await step
    except asyncio.CancelledError:
        pass
    except Exception:
        logger.exception("a step of the stop failed; going on")


async def _quietly(step: Coroutine[Any, Any, None]) -> None:
    try:
        await step
    except Exception:
        logger.warning("cleanup after a failed start failed", exc_info=True)


async def _run_in_batches(hooks: list[Coroutine[Any, Any, None]]) -> None:
    """Await ``hooks`` a batch at a time (each is guarded: none raises)."""
    try:
        for start in range(0, len(hooks), _HOOK_BATCH):
            await asyncio.gather(*hooks[start : start + _HOOK_BATCH])
    finally:
        for hook in hooks:
            hook.close()  # the ones a cancellation left unstarted
