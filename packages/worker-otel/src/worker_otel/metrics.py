"""``set_meter_provider``: the nine go-worker instruments (spec §7) fed by a TaskManager.

Per-task counters and the latency histogram carry the ``queue`` attribute (and ``handler`` for durable
tasks); they are fed by an instrumentation object the manager calls on the event loop, so they count
from the moment the provider is set, which is also the start time the SDK reports for the cumulative
series. ``tasks_running`` and ``queue_depth`` are manager-wide gauges read from ``manager.metrics()``
at collection time. ``results_dropped_total`` has no attributes (a result belongs to no subscriber's
queue).

OpenTelemetry's Python API cannot unregister an observable callback, so each provider binding has an
``active`` flag: replacing the provider (or passing ``None``) clears it, the old callbacks report
nothing from then on and drop their reference to the manager.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from typing import TYPE_CHECKING, Final, final

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation
from worker_core import TaskManager, TaskStatus
from worker_core.durable.types import DurableTask
from worker_core.errors import ConfigurationError

from . import semconv
from ._version import VERSION

if TYPE_CHECKING:
    from worker_core import Task

__all__ = ("set_meter_provider",)

_COMPLETED: Final = TaskStatus.COMPLETED
_CANCELLED: Final = TaskStatus.CANCELLED


@final
class _Series:
    """The counters of one attribute set (one queue, or one queue and durable handler)."""

    __slots__ = ("attributes", "cancelled", "completed", "failed", "retried", "scheduled")

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes
        self.scheduled = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0


@final
class _TaskMetricsInstrumentation:
    """What the manager calls (``add_instrumentation``): cheap counter updates on the event loop.

    ``on_start`` is deliberately absent, so the manager skips that call altogether.
    """

    __slots__ = ("_by_handler", "_by_queue", "_histogram", "_lock", "_series", "results_dropped")

    def __init__(self, histogram: Histogram | None) -> None:
        self._histogram = histogram
        self._by_queue: dict[str, _Series] = {}
        self._by_handler: dict[tuple[str, str], _Series] = {}
        self._series: list[_Series] = []
        # Guards inserts against the collector thread copying the list; updates of an int need no lock.
        self._lock = threading.Lock()
        self.results_dropped = 0

    def _series_for(self, task: Task) -> _Series:
        if not task.durable:  # in-memory task: the common, fast case
            series = self._by_queue.get(task.queue)
            if series is not None:
                return series
            return self._new_series(task.queue, None)
        # A durable task's name is its handler name.
        return self._by_handler.get((task.queue, task.name)) or self._new_series(task.queue, task.name)

    def _new_series(self, queue: str, handler: str | None) -> _Series:
        """The series of a queue (or durable queue and handler) seen for the first time."""
        with self._lock:
            if handler is None:
                series = self._by_queue.get(queue)
                if series is None:
                    series = self._by_queue[queue] = _Series({semconv.ATTR_QUEUE: queue})
                    self._series.append(series)
                return series
            series = self._by_handler.get((queue, handler))
            if series is None:
                series = _Series({semconv.ATTR_QUEUE: queue, semconv.ATTR_HANDLER: handler})
                self._by_handler[queue, handler] = series
                self._series.append(series)
            return series

    def all_series(self) -> tuple[_Series, ...]:
        with self._lock:
            return tuple(self._series)

    def on_scheduled(self, task: Task | DurableTask) -> None:
        if isinstance(task, DurableTask):  # a durable registration: the record that went to the backend
            key = (task.queue, task.handler)
            (self._by_handler.get(key) or self._new_series(*key)).scheduled += 1
        else:
            self._series_for(task).scheduled += 1

    def on_retry(self, task: Task, delay_s: float, attempt: int) -> None:
        self._series_for(task).retried += 1

    def on_finish(self, task: Task, status: TaskStatus, latency_s: float | None) -> None:
        series = self._series_for(task)
        if status is _COMPLETED:
            series.completed += 1
        elif status is _CANCELLED:
            series.cancelled += 1
        else:  # FAILED, DEADLINE_EXCEEDED, INVALID: the terminal statuses the manager counts as failed
            series.failed += 1
        if latency_s is not None and self._histogram is not None:
            self._histogram.record(latency_s, series.attributes)

    def on_result_dropped(self, count: int) -> None:
        self.results_dropped += count


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


@final
class _MeterBinding:
    """The instruments one provider holds for one manager; ``close`` silences them for good."""

    def __init__(self, manager: TaskManager, meter: Meter, *, latency_histogram: bool) -> None:
        # Weak: the provider keeps these callbacks (and so this binding) for as long as it lives.
        self._manager: weakref.ref[TaskManager] | None = weakref.ref(manager)
        self._active = True
        self.instrumentation = _TaskMetricsInstrumentation(None)
        try:
            self._create_instruments(meter, latency_histogram)
        except BaseException:
            self.close()  # callbacks already registered with the provider must not report anything
            raise

    def _create_instruments(self, meter: Meter, latency_histogram: bool) -> None:
        desc = semconv.DESCRIPTIONS
        name = semconv.METRIC_TASK_LATENCY
        if latency_histogram:
            with _creating(name):
                self.instrumentation = _TaskMetricsInstrumentation(
                    meter.create_histogram(
                        name,
                        unit="s",
                        description=desc[name],
                        explicit_bucket_boundaries_advisory=semconv.LATENCY_BUCKETS_S,
                    )
                )
        counters = {
            semconv.METRIC_TASKS_SCHEDULED: self._per_series("scheduled"),
            semconv.METRIC_TASKS_COMPLETED: self._per_series("completed"),
            semconv.METRIC_TASKS_FAILED: self._per_series("failed"),
            semconv.METRIC_TASKS_CANCELLED: self._per_series("cancelled"),
            semconv.METRIC_TASKS_RETRIED: self._per_series("retried"),
            semconv.METRIC_RESULTS_DROPPED: self._observe_dropped,
        }
        for name, callback in counters.items():
            with _creating(name):
                meter.create_observable_counter(name, [callback], description=desc[name])
        gauges = {
            semconv.METRIC_TASKS_RUNNING: self._from_snapshot("running"),
            semconv.METRIC_QUEUE_DEPTH: self._from_snapshot("queue_depth"),
        }
        for name, callback in gauges.items():
            with _creating(name):
                meter.create_observable_gauge(name, [callback], description=desc[name])

    def close(self) -> None:
        self._active = False
        self._manager = None

    def _per_series(self, field: str) -> _Callback:
        get = attrgetter(field)

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if not self._active:
                return ()
            return [Observation(get(series), series.attributes) for series in self.instrumentation.all_series()]

        return observe

    def _observe_dropped(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._active:
            return ()
        return (Observation(self.instrumentation.results_dropped),)

    def _from_snapshot(self, field: str) -> _Callback:
        get = attrgetter(field)

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            manager = self._manager() if self._manager is not None else None
            if manager is None or not self._active:
                return ()
            return (Observation(get(manager.metrics())),)

        return observe


@contextmanager
def _creating(name: str) -> Iterator[None]:
    """Turn whatever the SDK raises while creating an instrument into our ConfigurationError."""
    try:
        yield
    except Exception as exc:  # The SDK's own errors must not escape this package.
        raise ConfigurationError(f"otel metrics initialization failed: create {name}") from exc


_BINDINGS: weakref.WeakKeyDictionary[TaskManager, _MeterBinding] = weakref.WeakKeyDictionary()
_BINDINGS_LOCK = threading.Lock()


def set_meter_provider(
    manager: TaskManager,
    provider: MeterProvider | None,
    *,
    meter_name: str = semconv.DEFAULT_INSTRUMENTATION_NAME,
    meter_version: str | None = None,
    latency_histogram: bool = True,
) -> None:
    """Export ``manager``'s metrics through ``provider``, replacing any provider set before; ``None`` disables.

    The instruments are the nine of go-worker (see :mod:`worker_otel.semconv`). Replacing or removing
    a provider silences the old instruments' callbacks and stops the per-task updates, so a manager
    with no provider pays nothing per task.

    Args:
        manager: The task manager to observe.
        provider: The meter provider, or ``None`` to stop exporting.
        meter_name: Instrumentation scope name; an empty string means the default (as in go-worker).
        meter_version: Instrumentation scope version; this package's version when ``None``.
        latency_histogram: Record ``task_latency_seconds``. The SDK's ``Histogram.record`` is the one
            per-task cost that is not small (see the package README for figures); ``False`` leaves
            the histogram out and keeps the eight other instruments.

    Raises:
        ConfigurationError: ``manager`` is not a ``TaskManager``, ``provider`` not a ``MeterProvider``,
            or the provider failed to create an instrument; the previous provider, if any, stays in place.
    """
    if not isinstance(manager, TaskManager):
        raise ConfigurationError(f"manager must be a worker_core.TaskManager, got {type(manager).__name__}")
    if provider is not None and not isinstance(provider, MeterProvider):
        raise ConfigurationError(
            f"provider must be an opentelemetry.metrics.MeterProvider or None, got {type(provider).__name__}"
        )
    name: object = meter_name
    version: object = meter_version
    if not isinstance(name, str) or not (version is None or isinstance(version, str)):
        raise ConfigurationError("meter_name and meter_version must be str")
    with _BINDINGS_LOCK:
        binding: _MeterBinding | None = None
        if provider is not None:
            with _creating("meter"):
                meter = provider.get_meter(
                    meter_name or semconv.DEFAULT_INSTRUMENTATION_NAME,
                    VERSION if meter_version is None else meter_version,
                )
            binding = _MeterBinding(manager, meter, latency_histogram=latency_histogram)
        old = _BINDINGS.pop(manager, None)
        if old is not None:
            manager.remove_instrumentation(old.instrumentation)
            old.close()
        if binding is not None:
            manager.add_instrumentation(binding.instrumentation)
            _BINDINGS[manager] = binding
