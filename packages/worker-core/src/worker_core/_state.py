"""The state every manager holds, and its timer-driven housekeeping (deadlines, retention, result fan-out).

:class:`EngineState` is the base of :class:`~worker_core._engine.Engine`: plain attributes on one event
loop, no locks. Deadlines of running attempts share one heap and one timer; retention evicts finished
tasks in finish order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from ._ratelimit import TokenBucket
from ._scheduler import DelayedHeap, ReadyScheduler
from .hooks import TaskHooks
from .status import TaskStatus
from .task import Task, TaskContext

if TYPE_CHECKING:
    from ._anchor import ManagerAnchor
    from .protocols import TaskTracer
    from .results import ResultSubscription

__all__ = ("EngineState", "emit")

_INF = float("inf")
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
_DEADLINE = TaskStatus.DEADLINE_EXCEEDED

logger = logging.getLogger("worker_core.manager")


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
class EngineState:
    """Configuration, registries, queues, counters; deadline and retention bookkeeping."""

    def __init__(
        self,
        *,
        max_workers: int,
        max_tasks: int,
        tasks_per_second: float | None,
        timeout_s: float | None,
        retry_delay_s: float,
        max_retries: int,
        default_queue: str,
        queue_weights: dict[str, int],
    ) -> None:
        self._max_workers = max_workers
        self._max_tasks = max_tasks
        self._tps = tasks_per_second
        self._timeout_s = timeout_s
        self._retry_delay_s = retry_delay_s
        self._max_retries = max_retries
        self._default_queue = default_queue
        self._queue_weights = queue_weights
        self._loop: asyncio.AbstractEventLoop | None = None
        self._anchor: ManagerAnchor | None = None  # see TaskManager.anchor
        self._capacity_hook: Callable[[], None] | None = None
        self._deadlines: list[tuple[float, int, TaskContext]] = []
        self._deadline_seq = itertools.count()
        self._deadline_lane: deque[TaskContext] = deque()  # attempts with the default timeout, in start order
        self._worker_ctx: list[TaskContext | None] = []  # the latest attempt of each worker's fast path
        self._deadline_at = _INF
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._tasks: dict[int, Task] = {}
        self._ready = ReadyScheduler(queue_weights)
        self._delayed = DelayedHeap()
        self._delayed_timer: asyncio.TimerHandle | None = None
        self._limiter: TokenBucket | None = None
        self._idle: deque[asyncio.Future[None]] = deque()
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._worker_busy: list[bool] = []  # per worker index: running a task now
        self._throttled: set[int] = set()  # indexes of workers waiting for a rate limiter token
        self._n_busy = 0  # workers running a task now
        self._durable_outcome: Callable[[Task, Any], Awaitable[None]] = _no_durable_outcome
        self._pools: list[ThreadPoolExecutor] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._accepting = True
        self._closing = False
        self._started = False
        self._stopped = False
        self._active = 0  # registered in-memory tasks not yet terminal
        self._wait_futures: list[asyncio.Future[None]] = []
        self._subscriptions: list[ResultSubscription] = []
        self._drop_oldest = False
        self._hooks: TaskHooks | None = None
        self._tracer: TaskTracer | None = None
        self._terminal: deque[Task] = deque()  # finished tasks in finish order, for retention
        self._retention: tuple[float | None, int | None, float] | None = None
        self._retention_checked = 0.0
        self._retention_task: asyncio.Task[None] | None = None
        self._instrumentations: list[object] = []
        self._i_scheduled: tuple[Callable[[Task], Any], ...] = ()
        self._i_start: tuple[Callable[[Task], Any], ...] = ()
        self._i_finish: tuple[Callable[[Task, TaskStatus, float | None], Any], ...] = ()
        self._i_retry: tuple[Callable[[Task, float, int], Any], ...] = ()
        self._i_dropped: tuple[Callable[[int], Any], ...] = ()
        self._fast_attempts = True  # see _refresh_fast_path
        # Counters (MetricsSnapshot).
        self._n_scheduled = 0
        self._n_running = 0
        self._n_completed = 0
        self._n_failed = 0
        self._n_cancelled = 0
        self._n_retried = 0
        self._n_dropped = 0
        self._lat_count = 0
        self._lat_total = 0.0
        self._lat_max = 0.0

    def _refresh_fast_path(self) -> None:
        """Decide whether workers may run async attempts inline; call it whenever one of its inputs changes.

        They may when nothing is to be called before an attempt starts: no on_start hook or
        instrumentation (a tracer's span is started and ended inline too).
        """
        hooks = self._hooks
        self._fast_attempts = not self._i_start and (hooks is None or hooks.on_start is None)

    def _interrupt(self, task: Task, reason: TaskStatus) -> None:
        """Stop the running attempt of ``task`` for ``reason`` (CANCELLED or DEADLINE_EXCEEDED)."""
        task._cancel_reason = reason
        ctx = task._ctx
        if ctx is not None:
            ctx._cancel()
            runner = ctx._runner
            if runner is not None:
                runner.cancel()

    # ------------------------------------------------------------------------------------- deadlines

    def _watch_deadline(self, ctx: TaskContext, timeout_s: float) -> None:
        """Interrupt the attempt of ``ctx`` at ``ctx.deadline`` (loop clock), ``timeout_s`` after its start.

        One timer for all attempts instead of a timer per attempt. A worker's fast path does not call
        this: it leaves its attempt in ``_worker_ctx[index]`` and arms the timer when its deadline is the
        soonest; the timer scans those slots (one per worker) when it fires. Other attempts with the
        manager's default
        timeout (nearly all) go to a FIFO lane: they start in loop-clock order, so their deadlines come
        in order too and a deque append replaces a heap push. Other timeouts share a heap. Entries of
        attempts that ended are dropped when they reach the front, or in a compaction when they pile
        up behind a long-running attempt.
        """
        deadline: float = ctx.deadline  # type: ignore[assignment]
        lane = self._deadline_lane
        while lane and not lane[0]._active:
            lane.popleft()
        # The lane only takes a deadline that keeps it sorted (an on_start hook may have run in between).
        if timeout_s == self._timeout_s and (not lane or lane[-1].deadline <= deadline):  # type: ignore[operator]
            lane.append(ctx)
            if len(lane) > 2 * self._n_running + 256:
                self._deadline_lane = deque(entry for entry in lane if entry._active)
        else:
            heap = self._deadlines
            heapq.heappush(heap, (deadline, next(self._deadline_seq), ctx))
            if len(heap) > 2 * self._n_running + 256:
                heap[:] = [entry for entry in heap if entry[2]._active]
                heapq.heapify(heap)
        if deadline < self._deadline_at:
            self._arm_deadline_timer(deadline)

    def _arm_deadline_timer(self, when: float) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = when
        self._deadline_timer = asyncio.get_running_loop().call_at(when, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        self._deadline_at = _INF
        now = asyncio.get_running_loop().time() + _CLOCK_RESOLUTION
        heap = self._deadlines
        while heap and (heap[0][0] <= now or not heap[0][2]._active):
            self._expire(heapq.heappop(heap)[2])
        lane = self._deadline_lane
        while lane and (lane[0].deadline <= now or not lane[0]._active):  # type: ignore[operator]
            self._expire(lane.popleft())
        when = heap[0][0] if heap else _INF
        if lane and lane[0].deadline is not None and lane[0].deadline < when:
            when = lane[0].deadline
        slots = self._worker_ctx
        for index, ctx in enumerate(slots):
            if ctx is None:
                continue
            if not ctx._active:
                slots[index] = None
            elif ctx.task._cancel_reason is None:
                deadline: float = ctx.deadline  # type: ignore[assignment]
                if deadline <= now:
                    self._interrupt(ctx.task, _DEADLINE)
                elif deadline < when:
                    when = deadline
        if when != _INF:
            self._arm_deadline_timer(when)

    def _expire(self, ctx: TaskContext) -> None:
        if ctx._active and ctx.task._cancel_reason is None:
            self._interrupt(ctx.task, _DEADLINE)

    # ------------------------------------------------------------------------------- results, retention

    def _prune(self, now: float, *, sweep: bool = False) -> None:
        """Evict finished tasks by TTL (at most once per interval) and by count (every call)."""
        if self._retention is None:
            return
        ttl, max_entries, interval = self._retention
        terminal = self._terminal
        tasks = self._tasks
        if ttl is not None and (sweep or now - self._retention_checked >= interval):
            self._retention_checked = now
            while terminal and now - terminal[0]._completed_mono >= ttl:
                self._evict(terminal.popleft())
        if max_entries is not None:
            while len(tasks) > max_entries and terminal:
                self._evict(terminal.popleft())

    def _evict(self, task: Task) -> None:
        if self._tasks.get(task._key) is task:
            del self._tasks[task._key]

    async def _retention_loop(self) -> None:
        while self._retention is not None:
            await asyncio.sleep(self._retention[2])
            self._prune(time.monotonic(), sweep=True)


async def _no_durable_outcome(task: Task, outcome: Any) -> None:  # pragma: no cover - no lease without a runner
    raise RuntimeError(f"task {task.id} holds a lease but no durable runner is set")


def emit(callbacks: tuple[Callable[..., Any], ...], *args: Any) -> None:
    """Call instrumentation callbacks; one that raises is logged and does not stop the others."""
    for callback in callbacks:
        try:
            callback(*args)
        except Exception:
            logger.exception("instrumentation callback %r raised; ignored", callback)
