"""The event-loop side of the metrics: per-series counters, and one ``Histogram.record`` per finished task.

The manager calls :class:`TaskMetricsInstrumentation` on its event loop (``add_instrumentation``). Counter
updates are plain ``int`` changes on a per-series object that the observable instruments' callbacks read at
collection time, possibly from the collecting thread of a ``PeriodicExportingMetricReader`` (an ``int``
read is atomic). The latency of a finished task goes to the ``task_latency_seconds`` histogram through
the public ``Histogram.record`` API, with everything the call needs computed once per series: the
bound method, the attribute mapping (one dict per series, never rebuilt or mutated), and an empty
``Context`` (the manager reports a latency after the attempt's span ended, so there is no span for an
exemplar to point at, and the SDK need not look the current context up). The SDK's own locks make the
record safe against a collection in another thread.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Final, final

from opentelemetry.context import Context
from opentelemetry.metrics import NoOpHistogram
from worker_core import TaskStatus
from worker_core.durable.types import DurableTask

from . import semconv

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from worker_core import Task

__all__ = ("Series", "TaskMetricsInstrumentation")

logger = logging.getLogger("worker_otel.metrics")

_COMPLETED: Final = TaskStatus.COMPLETED
_CANCELLED: Final = TaskStatus.CANCELLED
_INF: Final = math.inf
#: The context every latency is recorded with: empty (see the module docstring).
_NO_CONTEXT: Final = Context()


@final
class Series:
    """The counters and the attributes of one attribute set (one queue, or one queue and durable handler)."""

    __slots__ = (
        "attributes",
        "cancelled",
        "completed",
        "failed",
        "key",
        "retried",
        "scheduled",
    )

    def __init__(self, key: str | tuple[str, str], attributes: dict[str, str]) -> None:
        self.key = key
        self.attributes = attributes
        self.scheduled = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0


@final
class TaskMetricsInstrumentation:
    """What the manager calls (``add_instrumentation``): counter updates and latency records on the event loop.

    ``on_start`` is deliberately absent, so the manager skips that call altogether.

    Args:
        histogram: The ``task_latency_seconds`` instrument; ``None`` (or the API's no-op histogram): no
            latency is recorded, and no call is made for it.
        durable: ``False`` for a manager without a durable backend: none of its tasks is durable (no
            per-task check).
    """

    __slots__ = (
        "_by_handler",
        "_by_queue",
        "_durable",
        "_lock",
        "_record",
        "_series",
        "results_dropped",
        "schedule_ticks",
    )

    def __init__(self, histogram: Histogram | None, *, durable: bool = True) -> None:
        # The bound method, looked up once; a no-op histogram would only cost the call.
        self._record = None if histogram is None or isinstance(histogram, NoOpHistogram) else histogram.record
        self._durable = durable
        self._by_queue: dict[str, Series] = {}
        self._by_handler: dict[tuple[str, str], Series] = {}
        self._series: list[Series] = []
        # Guards inserts against the collector thread copying the list; updates of a number need no lock.
        self._lock = threading.Lock()
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
        record = self._record
        if latency_s is None or record is None:
            return
        if 0.0 <= latency_s < _INF:  # NaN fails both tests
            record(latency_s, series.attributes, _NO_CONTEXT)
        else:
            logger.warning("task_latency_seconds: latency %r is not a finite non-negative number; ignored", latency_s)

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
        """Every series seen so far (any thread)."""
        with self._lock:
            return tuple(self._series)

    @property
    def latency_mode(self) -> str:
        """``"recorded"`` (``Histogram.record`` per finished task) or ``"off"``."""
        return "off" if self._record is None else "recorded"
