"""The steps of a stop: what both stops do first, the graceful drain, and the bounded halt.

:class:`Shutdown` holds the parts a stop touches and the little a stop itself owns (the ``on_finish`` hooks of
tasks it cancelled, and how many attempts and hooks it had to abandon). The lifecycle decides *when* each step
runs (``begin``, then ``drain`` for a graceful stop, then ``halt``); this module decides what each step does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from worker_core.errors import TaskCancelledError
from worker_core.status import TaskStatus

if TYPE_CHECKING:
    from worker_core.durable.config import DurableConfig
    from worker_core.durable.runtime import DurableRuntime
    from worker_core.results import ResultBus

    from .attempt import AttemptRunner
    from .intake import Intake
    from .outcomes import Finisher, Outcomes, Retries
    from .pool import WorkerPool
    from .processes import ProcessRunner
    from .registry import TaskRegistry
    from .scheduler import Scheduler
    from .supervisor import Supervisor
    from .threads import ThreadRunner

__all__ = ("Shutdown",)

logger = logging.getLogger("worker_core.manager")

_QUEUED: Final = TaskStatus.QUEUED
_CANCELLED: Final = TaskStatus.CANCELLED
_HOOK_BATCH = 64  # async on_finish hooks of tasks cancelled by a stop run this many at a time
_TAIL_S = 1.0  # past the bound, the backend steps of a stop (leases handed back, node list) get at least this
_CLOSE_S = 0.25  # and closing the backend at least this more


class Shutdown:
    """Both stops of one manager, step by step; counts what a stop abandoned (``metrics().abandoned``)."""

    def __init__(
        self,
        *,
        intake: Intake,
        supervisor: Supervisor,
        scheduler: Scheduler,
        pool: WorkerPool,
        attempts: AttemptRunner,
        outcomes: Outcomes,
        retries: Retries,
        finisher: Finisher,
        registry: TaskRegistry,
        bus: ResultBus,
        threads: ThreadRunner,
        processes: ProcessRunner | None,
        config: DurableConfig | None,
        durable: Callable[[], DurableRuntime | None],
    ) -> None:
        self._intake = intake
        self._supervisor = supervisor
        self._scheduler = scheduler
        self._pool = pool
        self._attempts = attempts
        self._outcomes = outcomes
        self._retries = retries
        self._finisher = finisher
        self._registry = registry
        self._bus = bus
        self._threads = threads
        self._processes = processes
        self._config = config
        self._durable = durable  # the durable runtime exists only once the manager started
        self._stop_hooks: list[Coroutine[Any, Any, None]] = []  # on_finish hooks of tasks a stop cancelled
        self.abandoned = 0

    def begin(self, *, now: bool) -> None:
        """The synchronous first step of a stop, before any ``await``.

        Intake closes and nothing is leased any more; with ``now``, every timer stops and everything waiting
        or running is cancelled too.
        """
        self._intake.close()
        self._supervisor.stop_restarts()
        durable = self._durable()
        if durable is not None:
            durable.stop_leasing()
        if not now:
            return
        self._outcomes.retrying = False
        self._pool.close()
        self._scheduler.stop()
        self._registry.retention.close()
        # Leased tasks waiting for a worker stay held: their leases are handed back at the end of the stop.
        cancelled = [task for task in self._scheduler.drain() if not task.durable] + self._retries.stop()
        for task in self._registry.tasks():  # tasks between two states (execute_task waiting for a token)
            if task.status is _QUEUED and not task.durable:
                cancelled.append(task)
        finisher = self._finisher
        for task in cancelled:
            pending = finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            if pending is not None:
                self._stop_hooks.append(pending)
        for task in self._registry.running():
            self._attempts.interrupt(task, _CANCELLED)

    async def drain(self) -> None:
        """Graceful stop: lease nothing more, hand back unstarted leases, let queued and running work finish."""
        durable = self._durable()
        if durable is not None:
            await self._let_dequeue_finish(durable.in_dequeue, self._config.options.lease_s)  # type: ignore[union-attr]
            await durable.release(durable.take_unstarted())
            await durable.until_idle()
        if self._pool.capacity == 0:
            await self._cancel_unstartable()
        await self._registry.wait(None)

    async def _cancel_unstartable(self) -> None:
        """No worker slot (``set_max_workers(0)``): waiting tasks would never start, so the drain cancels them."""
        self._outcomes.retrying = False  # a retry could never start either: a failure now finishes its task
        waiting = [task for task in self._scheduler.drain() if not task.durable] + self._retries.stop()
        if not waiting:
            return
        logger.warning("graceful stop with max_workers=0: %d waiting task(s) can never start; cancelled", len(waiting))
        finisher = self._finisher
        for task in waiting:
            pending = finisher.finish(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
            if pending is not None:
                await pending

    async def _let_dequeue_finish(self, in_dequeue: bool, limit_s: float) -> None:
        """A dequeue in flight may have leased tasks: let it finish (up to ``limit_s``) rather than cut it."""
        if not in_dequeue:
            return
        lease_loop = self._supervisor.task("durable-lease")
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
            self._supervisor.background(_run_in_batches(hooks))
        durable = self._durable()
        if durable is not None and durable.in_dequeue:
            await _bounded(self._let_dequeue_finish(True, max(0.0, deadline - loop.time())))
        await _bounded(_wait_all(self._pending, deadline))
        self._give_up(loop)
        # What is left talks to the backend, which may not answer (a frozen server, a lost network): it gets
        # what is left of the bound, at least _TAIL_S, and closing the backend at least _CLOSE_S more.
        tail = max(deadline, loop.time() + _TAIL_S)
        loops = self._supervisor.close()
        await _bounded(_wait_all(lambda: {task for task in loops if not task.done()}, tail))
        if durable is not None:
            what = "handing leases back (those not handed back expire by themselves)"
            await _bounded(durable.release_held(), until=tail, what=what)
        if self._config is not None:
            await _bounded(self._config.close(), until=max(tail, loop.time() + _CLOSE_S), what="closing the backend")
        self._threads.close()
        if self._processes is not None:
            self._processes.close()
        self._attempts.close()
        self._bus.close()

    def _pending(self) -> set[asyncio.Task[Any]]:
        return self._attempts.runners() | self._supervisor.pending_background()

    def _give_up(self, loop: asyncio.AbstractEventLoop) -> None:
        """Past the stop's bound: stop waiting for what still runs, finish its tasks, count and log it.

        An attempt still running (a plain function that ignores ``ctx.cancelled``, code that swallows its
        cancellation) is finished ``CANCELLED`` and its code left to itself (a thread is abandoned); an attempt
        stuck in a hook after its task finished, and a hook of a task the stop cancelled, are cancelled once
        more and left.
        """
        stuck = list(self._registry.running())
        if stuck:
            shown = ", ".join(str(task.id) for task in stuck[:5])
            more = f" and {len(stuck) - 5} more" if len(stuck) > 5 else ""
            logger.warning("%d tasks still running past the stop's bound, abandoned: %s%s", len(stuck), shown, more)
        for task in stuck:
            self._attempts.give_up(task)
            self._finisher.finish_now(task, _CANCELLED, None, TaskCancelledError(f"task {task.id} was cancelled"))
        left = self._pending()
        for job in left:
            job.cancel()
        if len(left) > len(stuck):
            logger.warning("%d task hooks still running past the stop's bound: abandoned", len(left) - len(stuck))
        self.abandoned += max(len(stuck), len(left))


async def _wait_all(pending: Callable[[], set[asyncio.Task[Any]]], deadline: float) -> None:
    """Wait until ``pending()`` is empty or the loop clock reaches ``deadline``."""
    loop = asyncio.get_running_loop()
    while (tasks := pending()) and (left := deadline - loop.time()) > 0:
        await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)


async def _bounded(step: Coroutine[Any, Any, None], *, until: float | None = None, what: str = "") -> None:
    """Run one step of a stop; a cancellation ends the step (the stop goes on), any error is logged.

    With ``until`` (a loop time), the step is cancelled when the loop clock reaches it, and that is logged.
    """
    try:
        if until is None:
            await step
        else:
            async with asyncio.timeout_at(until):
                await step
    except TimeoutError:
        logger.warning("the stop's bound passed while %s: given up", what)
    except asyncio.CancelledError:
        pass
    except Exception:
        logger.exception("a step of the stop failed; going on")


async def _run_in_batches(hooks: list[Coroutine[Any, Any, None]]) -> None:
    """Await ``hooks`` a batch at a time (each is guarded: none raises)."""
    try:
        for start in range(0, len(hooks), _HOOK_BATCH):
            await asyncio.gather(*hooks[start : start + _HOOK_BATCH])
    finally:
        for hook in hooks:
            hook.close()  # the ones a cancellation left unstarted
