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
from worker_core import TaskStatus
from worker_core.errors import ConfigurationError

from . import semconv
from ._version import VERSION

if TYPE_CHECKING:
    from worker_core import Task, TaskManager

__all__ = ("set_meter_provider",)

_COMPLETED: Final = 1
_FAILED: Final = 2
_CANCELLED: Final = 3
# Terminal statuses -> which counter moves; other statuses never reach on_finish.
_OUTCOME: Final[dict[TaskStatus, int]] = {
    TaskStatus.COMPLETED: _COMPLETED,
    TaskStatus.FAILED: _FAILED,
    TaskStatus.DEADLINE_EXCEEDED: _FAILED,
    TaskStatus.INVALID: _FAILED,
    TaskStatus.CANCELLED: _CANCELLED,
}


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


def _series_key(task: Task) -> tuple[str, str | None]:
    """(queue, handler name for a durable task, else None)."""
    # A durable task's name is its handler name; the manager marks durable tasks by their outcome callback.
    return (task.queue, task.name if task._on_outcome is not None else None)


@final
class _TaskMetricsInstrumentation:
    """What the manager calls (``add_instrumentation``): cheap counter updates on the event loop.

    ``on_start`` is deliberately absent, so the manager skips that call altogether.
    """

    __slots__ = ("_histogram", "_lock", "_series", "results_dropped")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._series: dict[tuple[str, str | None], _Series] = {}
        # Guards inserts against the collector thread copying the dict; updates of an int need no lock.
        self._lock = threading.Lock()
        self.results_dropped = 0

    def _series_for(self, task: Task) -> _Series:
        key = _series_key(task)
        series = self._series.get(key)
        if series is None:
            attributes = {semconv.ATTR_QUEUE: key[0]}
            if key[1] is not None:
                attributes[semconv.ATTR_HANDLER] = key[1]
            with self._lock:
                series = self._series.setdefault(key, _Series(attributes))
        return series

    def all_series(self) -> tuple[_Series, ...]:
        with self._lock:
            return tuple(self._series.values())

    def on_scheduled(self, task: Task) -> None:
        self._series_for(task).scheduled += 1

    def on_retry(self, task: Task, delay_s: float, attempt: int) -> None:
        self._series_for(task).retried += 1

    def on_finish(self, task: Task, status: TaskStatus, latency_s: float | None) -> None:
        series = self._series_for(task)
        outcome = _OUTCOME.get(status)
        if outcome == _COMPLETED:
            series.completed += 1
        elif outcome == _FAILED:
            series.failed += 1
        elif outcome == _CANCELLED:
            series.cancelled += 1
        if latency_s is not None:
            self._histogram.record(latency_s, series.attributes)

    def on_result_dropped(self, count: int) -> None:
        self.results_dropped += count


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


@final
class _MeterBinding:
    """The instruments one provider holds for one manager; ``close`` silences them for good."""

    def __init__(self, manager: TaskManager, meter: Meter) -> None:
        self._manager: TaskManager | None = manager
        self._active = True
        desc = semconv.DESCRIPTIONS
        name = semconv.METRIC_TASK_LATENCY
        with _creating(name):
            histogram = meter.create_histogram(
                name, unit="s", description=desc[name], explicit_bucket_boundaries_advisory=semconv.LATENCY_BUCKETS_S
            )
        self.instrumentation = _TaskMetricsInstrumentation(histogram)
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
            manager = self._manager
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

    Raises:
        ConfigurationError: The provider failed to create an instrument; the previous provider, if
            any, stays in place.
    """
    with _BINDINGS_LOCK:
        binding: _MeterBinding | None = None
        if provider is not None:
            meter = provider.get_meter(
                meter_name or semconv.DEFAULT_INSTRUMENTATION_NAME,
                VERSION if meter_version is None else meter_version,
            )
            binding = _MeterBinding(manager, meter)
        old = _BINDINGS.pop(manager, None)
        if old is not None:
            manager.remove_instrumentation(old.instrumentation)
            old.close()
        if binding is not None:
            manager.add_instrumentation(binding.instrumentation)
            _BINDINGS[manager] = binding
