"""The event-loop side of the metrics: per-series counters and latency buckets, a few hundred ns per task.

The manager calls :class:`TaskMetricsInstrumentation` on its event loop (``add_instrumentation``). Every
update is a plain ``int``/``float`` change on a per-series object; the metrics callbacks read them at
collection time, possibly from the collecting thread of a ``PeriodicExportingMetricReader``.

Latency samples are pre-aggregated here (the ``task_latency_seconds`` buckets, count, sum, min and
max of each series since the last hand-over) instead of calling the SDK's ``Histogram.record``
(about 5 us) per task; :mod:`worker_otel._sdk_histogram` merges them into the SDK's histogram storage
when a reader collects. When that merge is not possible the instrumentation records each sample
through ``Histogram.record`` instead (``record_each``).

Hand-over without a lock on the event loop: the collector swaps each series' :class:`_Pending` for an
empty one, then waits until the event loop is outside its update section (``_writing``), so the
samples it took are complete and no later sample can reach them (the event loop re-reads
``series.pending`` for every sample). This relies on the GIL ordering the two threads' attribute
reads and writes; free-threaded builds use ``Histogram.record`` (see ``_sdk_histogram``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Final, final

from worker_core import TaskStatus
from worker_core.durable.types import DurableTask

from . import semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from worker_core import Task

__all__ = ("Pending", "Series", "TaskMetricsInstrumentation")

logger = logging.getLogger("worker_otel.metrics")

_COMPLETED: Final = TaskStatus.COMPLETED
_CANCELLED: Final = TaskStatus.CANCELLED
_BOUNDS: Final = semconv.LATENCY_BUCKETS_S
_FIRST_BOUND: Final = _BOUNDS[0]
_N_BUCKETS: Final = len(_BOUNDS) + 1
_INF: Final = math.inf
#: How long a collector waits for the event loop to leave its few-bytecode update section (never, in practice).
_WRITER_WAIT_S: Final = 1.0


@final
class Pending:
    """Latency samples of one series since the last hand-over: bucket counts, sum, min and max.

    A sample's bucket is ``bisect_left`` on the boundaries, as in the SDK's explicit bucket histogram.
    """

    __slots__ = ("counts", "max", "min", "sum")

    def __init__(self) -> None:
        self.counts = [0] * _N_BUCKETS
        self.sum = 0.0
        self.min = _INF
        self.max = -_INF


@final
class Series:
    """The counters and pending latencies of one attribute set (one queue, or one queue and durable handler)."""

    __slots__ = (
        "attributes",
        "cancelled",
        "completed",
        "created_ns",
        "failed",
        "key",
        "pending",
        "retried",
        "scheduled",
    )

    def __init__(self, key: str | tuple[str, str], attributes: dict[str, str]) -> None:
        self.key = key
        self.attributes = attributes
        self.created_ns = time.time_ns()  # start time for SDK aggregations this series creates
        self.scheduled = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0
        self.pending = Pending()


@final
class TaskMetricsInstrumentation:
    """What the manager calls (``add_instrumentation``): counter and latency updates on the event loop.

    ``on_start`` is deliberately absent, so the manager skips that call altogether.
    """

    __slots__ = (
        "_by_handler",
        "_by_queue",
        "_durable",
        "_fast",
        "_histogram",
        "_lock",
        "_series",
        "_take_lock",
        "_writer_thread",
        "_writing",
        "results_dropped",
        "schedule_ticks",
    )

    def __init__(self, histogram: Histogram | None, *, pre_aggregate: bool, durable: bool = True) -> None:
        #: Where samples go when they are not pre-aggregated; ``None``: no latency histogram at all.
        self._histogram = histogram
        #: ``False`` for a manager without a durable backend: none of its tasks is durable (no per-task check).
        self._durable = durable
        self._fast = histogram is not None and pre_aggregate
        self._by_queue: dict[str, Series] = {}
        self._by_handler: dict[tuple[str, str], Series] = {}
        self._series: list[Series] = []
        # Guards inserts against the collector thread copying the list; updates of a number need no lock.
        self._lock = threading.Lock()
        self._take_lock = threading.Lock()  # one hand-over at a time (two readers, or close during a collection)
        self._writing = False
        self._writer_thread = 0
        self.results_dropped = 0
        #: (schedule, outcome) -> ticks; ``outcome`` is ``"fired"`` or why the tick was skipped. Inserts hold
        #: ``_lock`` (a collector thread copies the dict); one entry per schedule and outcome: bounded.
        self.schedule_ticks: dict[tuple[str, str], int] = {}

    # ---------------------------------------------------------------------------- event loop side

    def on_scheduled(self, task: Task[Any] | DurableTask) -> None:
        if task.__class__ is not DurableTask:  # register_task: an in-memory task (leased durable ones never come here)
            series = self._by_queue.get(task.queue)
            if series is not None:
                series.scheduled += 1
                return
        self._scheduled_slow(task)

    def _scheduled_slow(self, task: Task[Any] | DurableTask) -> None:
        if isinstance(task, DurableTask):  # a durable registration: the record that went to the backend
            self._series_at(task.queue, task.handler).scheduled += 1
        else:
            self._series_for(task).scheduled += 1

    def on_retry(self, task: Task[Any], delay_s: float, attempt: int) -> None:
        self._series_for(task).retried += 1

    def on_finish(self, task: Task[Any], status: TaskStatus, latency_s: float | None) -> None:
        # A durable task's name is its handler name.
        if self._durable and task.durable:
            series = self._by_handler.get((task.queue, task.name))
        else:
            series = self._by_queue.get(task.queue)
        if series is None:
            series = self._series_for(task)
        if status is _COMPLETED:
            series.completed += 1
        elif status is _CANCELLED:
            series.cancelled += 1
        else:  # FAILED, DEADLINE_EXCEEDED, INVALID: the terminal statuses the manager counts as failed
            series.failed += 1
        if latency_s is None:
            return
        if self._fast:
            # Chained test: a fast task lands in the first bucket without a bisect; NaN and negatives go on.
            if 0.0 <= latency_s <= _FIRST_BOUND:
                index = 0
            else:
                index = _bucket(latency_s)
                if index < 0:
                    return
            self._writing = True
            try:
                pending = series.pending  # read after raising the flag: see the module docstring
                pending.counts[index] += 1
                pending.sum += latency_s
                if latency_s < pending.min:
                    pending.min = latency_s
                if latency_s > pending.max:
                    pending.max = latency_s
            finally:
                self._writing = False
        elif self._histogram is not None:
            self._histogram.record(latency_s, series.attributes)

    def on_result_dropped(self, count: int) -> None:
        self.results_dropped += count

    def on_schedule_tick(self, schedule: str, outcome: str) -> None:
        key = (schedule, outcome)
        ticks = self.schedule_ticks
        if key in ticks:
            ticks[key] += 1
            return
        with self._lock:
            ticks[key] = ticks.get(key, 0) + 1

    def schedule_counts(self) -> list[tuple[tuple[str, str], int]]:
        """A copy of the tick counters (any thread)."""
        with self._lock:
            return list(self.schedule_ticks.items())

    def _series_for(self, task: Task[Any]) -> Series:
        if task.durable:
            return self._by_handler.get((task.queue, task.name)) or self._series_at(task.queue, task.name)
        return self._by_queue.get(task.queue) or self._series_at(task.queue, None)

    def _series_at(self, queue: str, handler: str | None) -> Series:
        """The series of a queue (or durable queue and handler), created when first seen."""
        with self._lock:
            self._writer_thread = threading.get_ident()
            if handler is None:
                series = self._by_queue.get(queue)
                if series is None:
                    series = self._by_queue[queue] = Series(queue, {semconv.ATTR_QUEUE: queue})
                    self._series.append(series)
                return series
            series = self._by_handler.get((queue, handler))
            if series is None:
                key = (queue, handler)
                series = Series(key, {semconv.ATTR_QUEUE: queue, semconv.ATTR_HANDLER: handler})
                self._by_handler[key] = series
                self._series.append(series)
            return series

    # ------------------------------------------------------------------------------ collector side

    def all_series(self) -> tuple[Series, ...]:
        with self._lock:
            return tuple(self._series)

    def take_latency(self) -> list[tuple[Series, Pending]]:
        """The latency samples of every series since the last call; each sample is taken exactly once.

        Safe from any thread while the event loop records.
        """
        with self._take_lock:
            taken: list[tuple[Series, Pending]] = []
            for series in self.all_series():
                pending = series.pending
                # max is written last: -inf means no complete sample yet, and an unswapped Pending keeps
                # whatever the event loop is writing into it for the next hand-over.
                if pending.max != -_INF:
                    series.pending = Pending()
                    taken.append((series, pending))
            if taken:
                self._wait_for_writer()
        return taken

    @property
    def latency_mode(self) -> str:
        """``"merged"`` (pre-aggregated), ``"recorded"`` (``Histogram.record`` per sample) or ``"off"``."""
        if self._histogram is None:
            return "off"
        return "merged" if self._fast else "recorded"

    def record_each(self) -> None:
        """From now on, give every sample to ``Histogram.record`` (pending samples are still taken)."""
        self._fast = False

    def _wait_for_writer(self) -> None:
        """Return once the event loop is out of the update section it may be in (it is a few bytecodes)."""
        if not self._writing or threading.get_ident() == self._writer_thread:
            return  # on the event loop's own thread the section cannot be running
        deadline = time.monotonic() + _WRITER_WAIT_S
        while self._writing:
            if time.monotonic() > deadline:  # pragma: no cover - the event loop thread is stuck mid-update
                logger.warning("task_latency_seconds: event loop did not leave its update section; collecting anyway")
                return
            time.sleep(0)  # hand the GIL to the event loop thread


def _bucket(latency_s: float) -> int:
    """Bucket index of a latency above the first boundary; -1 for what ``Histogram.record`` drops."""
    if latency_s < 0.0 or not math.isfinite(latency_s):
        logger.warning("task_latency_seconds: latency %r is not a finite non-negative number; ignored", latency_s)
        return -1
    return bisect_left(_BOUNDS, latency_s)
