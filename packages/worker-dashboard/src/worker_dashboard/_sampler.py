"""The live state every open page shares: one poller reads the store, pages and SSE streams read its snapshot.

The sampler is started by the first request and stops by itself after ``idle_stop`` seconds without one (so
a dashboard mounted in an app whose lifespan never reaches it still releases its task). Each tick reads the
overview and the nodes, and counts the outcomes that finished since the previous tick (the result store's
recent lists, bounded per queue). History is a bounded deque of samples. The DLQ's total is read every tick;
its split by queue (which reads up to 10,000 DLQ entries) every :data:`DEAD_COUNT_EVERY` ticks and after an action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from worker_core.admin import DurableAdmin, NodeInfo, Overview
from worker_core.durable.outcomes import ResultStoreBackend
from worker_core.errors import WorkerError
from worker_core.status import TaskStatus

__all__ = ("HISTORY", "Sample", "Sampler", "Snapshot")

logger = logging.getLogger(__name__)

#: Samples kept (at the default 2 s refresh: the last 12 minutes).
HISTORY = 360
_OUTCOMES_PER_QUEUE = 100  # outcomes read per queue and tick at most (the result store keeps 100 by default)
_MAX_SAMPLED_QUEUES = 200  # queues whose outcomes one tick reads at most (the rest: round robin next ticks)
#: Ticks between two counts of the DLQ per queue (a count reads up to 10,000 DLQ entries; the total is exact).
DEAD_COUNT_EVERY = 10


@dataclass(frozen=True, slots=True)
class Sample:
    """One tick: totals, and the tasks that finished since the previous tick (``completed``, ``failed``)."""

    at: float
    ready: int
    processing: int
    dead: int
    completed: int
    failed: int
    interval: float

    @property
    def throughput(self) -> float:
        """Finished tasks per second over the interval."""
        return (self.completed + self.failed) / self.interval if self.interval > 0 else 0.0

    @property
    def failure_rate(self) -> float:
        """Share of the finished tasks that did not complete (0.0 when none finished)."""
        done = self.completed + self.failed
        return self.failed / done if done else 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last tick read; ``version`` grows by one per tick, ``error`` says why a read failed."""

    version: int
    at: float
    overview: Overview | None
    nodes: tuple[NodeInfo, ...]
    error: str = ""
    samples: tuple[Sample, ...] = field(default=())


class Sampler:
    """Owns one polling task over ``admin`` (and ``results`` when the store keeps outcomes)."""

    def __init__(
        self,
        admin: DurableAdmin,
        results: ResultStoreBackend | None,
        *,
        interval: float = 2.0,
        idle_stop: float = 60.0,
        history: int = HISTORY,
    ) -> None:
        self.admin = admin
        self.results = results
        self.interval = interval
        self.idle_stop = idle_stop
        self._samples: deque[Sample] = deque(maxlen=history)
        self.snapshot = Snapshot(0, 0.0, None, ())
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()
        self._last_tick = 0.0
        self._cursor = 0  # round robin over queues when there are more than _MAX_SAMPLED_QUEUES
        self._ticks = 0
        self._dead: dict[str, int | None] = {}  # per-queue dead counts of the last counting tick
        self.viewers = 0  # open SSE streams (they keep the sampler running)
        self._closed = False

    def touch(self) -> None:
        """A request arrived: keep sampling, start the task if it is not running."""
        self._last_activity = time.monotonic()
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="worker-dashboard sampler")

    @property
    def running(self) -> bool:
        """Whether the polling task is alive."""
        return self._task is not None and not self._task.done()

    async def fresh(self) -> Snapshot:
        """The current snapshot, reading the store first if none was taken yet."""
        self.touch()
        if self.snapshot.version == 0:
            await self.wait_newer(0, max(5.0, self.interval * 3))
        return self.snapshot

    async def wait_newer(self, version: int, max_wait: float) -> Snapshot:
        """The snapshot once its version is above ``version`` (or the current one after ``max_wait`` seconds)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                while self.snapshot.version <= version:
                    await self._changed.wait()
        return self.snapshot

    def recount(self) -> None:
        """Count the DLQ per queue again on the next tick (an action changed it)."""
        self._ticks = 0

    async def aclose(self) -> None:
        """Stop the polling task (idempotent)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bug, not the store: logged, and the next tick tries again
                logger.exception("dashboard sampler tick failed")
            idle = time.monotonic() - self._last_activity
            if self.viewers == 0 and idle > self.idle_stop:
                return
            await asyncio.sleep(self.interval)  # the refresh period itself, not a synchronisation

    async def tick(self) -> Snapshot:
        """Read the store once and publish a new snapshot (a failed read is published as ``error``)."""
        now = time.time()
        overview: Overview | None
        try:
            count = self._ticks % DEAD_COUNT_EVERY == 0
            overview = await self.admin.overview(count_dead=count)
            if count:
                self._dead = {q.name: q.dead for q in overview.queues}
            else:  # the DLQ's length is exact every tick; its split by queue is from the last counting tick
                queues = tuple(replace(q, dead=self._dead.get(q.name)) for q in overview.queues)
                overview = replace(overview, queues=queues)
            self._ticks += 1
            nodes = tuple(await self.admin.nodes())
            error = ""
            if self.results is not None:
                completed, failed = await self._finished_since(overview, self._last_tick, now)
                if self._last_tick:
                    ready = overview.total_ready
                    processing = overview.total_processing
                    self._samples.append(
                        Sample(now, ready, processing, overview.dead, completed, failed, now - self._last_tick)
                    )
            self._last_tick = now
        except WorkerError as exc:
            overview, nodes, error = self.snapshot.overview, self.snapshot.nodes, f"{type(exc).__name__}: {exc}"
            logger.warning("dashboard could not read the store: %s", error)
        self.snapshot = Snapshot(self.snapshot.version + 1, now, overview, nodes, error, tuple(self._samples))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.snapshot

    async def _finished_since(self, overview: Overview, since: float, until: float) -> tuple[int, int]:
        assert self.results is not None
        names: Sequence[str] = [q.name for q in overview.queues]
        if len(names) > _MAX_SAMPLED_QUEUES:
            start = self._cursor % len(names)
            names = [*names[start:], *names[:start]][:_MAX_SAMPLED_QUEUES]
            self._cursor += _MAX_SAMPLED_QUEUES
        completed = failed = 0
        if not since:
            return 0, 0
        for name in names:
            outcomes: Sequence[Any] = await self.results.recent_outcomes(name, _OUTCOMES_PER_QUEUE)
            for outcome in outcomes:  # newest first: stop at the first one already counted
                if outcome.finished_at <= since:
                    break
                if outcome.finished_at > until:
                    continue
                if outcome.status is TaskStatus.COMPLETED:
                    completed += 1
                else:
                    failed += 1
        return completed, failed
