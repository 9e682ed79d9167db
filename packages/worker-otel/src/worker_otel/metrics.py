"""``set_meter_provider``: the nine go-worker instruments (spec §7) fed by a TaskManager.

Per-task counters and the latency histogram carry the ``queue`` attribute (and ``handler`` for durable
tasks); they are fed by an instrumentation object the manager calls on the event loop
(:mod:`worker_otel._instrumentation`), so they count from the moment the provider is set, which is also
the start time the SDK reports for the cumulative series. ``tasks_running`` and ``queue_depth`` are
manager-wide gauges read from ``manager.metrics()`` at collection time. ``results_dropped_total`` has
no attributes (a result belongs to no subscriber's queue).

The eight counters and gauges are observable instruments read at collection time. The latency
histogram is fed through the public ``Histogram.record`` API, once per finished task, with the
attributes of the task's series computed once (nothing of the SDK's internals is touched, so any
OpenTelemetry SDK, or another implementation of the API, works).

The instruments of one meter are created once and report every manager bound to that meter (an
SDK meter hands back the existing instrument, and its first callbacks, when one with the same name
is created again): their callbacks read the meter's current bindings, summing managers that report
the same attribute set. OpenTelemetry's Python API cannot unregister an observable callback, so
replacing a manager's provider (or passing ``None``) removes its binding from the meter: from then
on the binding reports nothing and holds no reference to the manager.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from operator import attrgetter
from typing import Final, final

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation
from worker_core import TaskManager
from worker_core.errors import ConfigurationError

from . import semconv
from ._instrumentation import Series, TaskMetricsInstrumentation
from ._version import VERSION

__all__ = ("set_meter_provider",)

_Callback = Callable[[CallbackOptions], Iterable[Observation]]
_COUNTERS: Final = (
    (semconv.METRIC_TASKS_SCHEDULED, "scheduled"),
    (semconv.METRIC_TASKS_COMPLETED, "completed"),
    (semconv.METRIC_TASKS_FAILED, "failed"),
    (semconv.METRIC_TASKS_CANCELLED, "cancelled"),
    (semconv.METRIC_TASKS_RETRIED, "retried"),
)
_GAUGES: Final = ((semconv.METRIC_TASKS_RUNNING, "running"), (semconv.METRIC_QUEUE_DEPTH, "queue_depth"))


@final
class _MeterBinding:
    """One manager bound to one meter: the instrumentation the manager calls, and a weak manager reference."""

    __slots__ = ("__weakref__", "instrumentation", "manager")

    def __init__(self, manager: TaskManager, instrumentation: TaskMetricsInstrumentation) -> None:
        # Weak: the provider keeps the instruments' callbacks, and through them this binding, for as long as it lives.
        self.manager: weakref.ref[TaskManager] | None = weakref.ref(manager)
        self.instrumentation = instrumentation


@final
class _MeterInstruments:
    """The nine instruments of one meter, created once, reporting the managers currently bound to it."""

    def __init__(self) -> None:
        #: Replaced, never mutated (callbacks may run in a reader's thread while bindings change).
        self.bindings: tuple[_MeterBinding, ...] = ()
        self.histogram: Histogram | None = None
        self._created: set[str] = set()

    def bind(self, meter: Meter, manager: TaskManager, *, latency_histogram: bool) -> _MeterBinding:
        """Create what is missing, then add a binding for ``manager`` (the caller holds ``_BINDINGS_LOCK``).

        Raises:
            ConfigurationError: The meter failed to create an instrument; nothing is bound.
        """
        self._create_missing(meter, latency_histogram)
        histogram = self.histogram if latency_histogram else None
        instrumentation = TaskMetricsInstrumentation(histogram, durable=manager.durable)
        binding = _MeterBinding(manager, instrumentation)
        self.bindings = (*self.bindings, binding)
        return binding

    def unbind(self, binding: _MeterBinding) -> None:
        """Stop reporting ``binding`` (the manager no longer calls it)."""
        self.bindings = tuple(b for b in self.bindings if b is not binding)
        binding.manager = None

    def _create_missing(self, meter: Meter, latency_histogram: bool) -> None:
        desc = {**semconv.DESCRIPTIONS, **semconv.DURABLE_DESCRIPTIONS}
        name = semconv.METRIC_TASK_LATENCY
        if latency_histogram and self.histogram is None:
            with _creating(name):
                histogram = meter.create_histogram(
                    name,
                    unit="s",
                    description=desc[name],
                    explicit_bucket_boundaries_advisory=semconv.LATENCY_BUCKETS_S,
                )
            self.histogram = histogram
        # Every callback reads the bindings of the moment.
        callbacks: list[tuple[str, Callable[..., object], _Callback]] = [
            (name, meter.create_observable_counter, self._per_series(field)) for name, field in _COUNTERS
        ]
        callbacks.append((semconv.METRIC_RESULTS_DROPPED, meter.create_observable_counter, self._observe_dropped))
        callbacks += [
            (semconv.METRIC_SCHEDULE_TICKS_FIRED, meter.create_observable_counter, self._schedule_ticks(fired=True)),
            (semconv.METRIC_SCHEDULE_TICKS_SKIPPED, meter.create_observable_counter, self._schedule_ticks(fired=False)),
        ]
        callbacks += [(name, meter.create_observable_gauge, self._from_snapshot(field)) for name, field in _GAUGES]
        callbacks += [
            (semconv.METRIC_DURABLE_BACKLOG, meter.create_observable_gauge, self._backlog(0)),
            (semconv.METRIC_DURABLE_BACKLOG_AGE, meter.create_observable_gauge, self._backlog(1)),
        ]
        for name, create, callback in callbacks:
            if name not in self._created:
                with _creating(name):
                    create(name, [callback], description=desc[name])
                self._created.add(name)

    def _per_series(self, field: str) -> _Callback:
        get = attrgetter(field)

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            bindings = self.bindings
            if len(bindings) == 1:  # the usual case: one manager per meter
                return [Observation(get(s), s.attributes) for s in bindings[0].instrumentation.all_series()]
            totals: dict[str | tuple[str, str], tuple[Series, int]] = {}
            for binding in bindings:
                for series in binding.instrumentation.all_series():
                    seen = totals.get(series.key)
                    totals[series.key] = (series, get(series) + (seen[1] if seen is not None else 0))
            return [Observation(value, series.attributes) for series, value in totals.values()]

        return observe

    def _observe_dropped(self, options: CallbackOptions) -> Iterable[Observation]:
        bindings = self.bindings
        if not bindings:
            return ()
        return (Observation(sum(b.instrumentation.results_dropped for b in bindings)),)

    def _schedule_ticks(self, *, fired: bool) -> _Callback:
        """Ticks fired (per schedule) or skipped (per schedule and reason), summed over the bound managers."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            totals: dict[tuple[str, str], int] = {}
            for binding in self.bindings:
                for key, count in binding.instrumentation.schedule_counts():
                    if (key[1] == "fired") is fired:
                        totals[key] = totals.get(key, 0) + count
            if fired:
                return [Observation(n, {semconv.ATTR_SCHEDULE: name}) for (name, _), n in totals.items()]
            return [
                Observation(n, {semconv.ATTR_SCHEDULE: name, semconv.ATTR_REASON: reason})
                for (name, reason), n in totals.items()
            ]

        return observe

    def _backlog(self, index: int) -> _Callback:
        """Per queue, from a durable backend that reports its backlog (``backlog()``, no I/O).

        The highest figure wins when several managers see the same queue (it is the deployment's, not theirs).
        """

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            seen: dict[str, float] = {}
            for binding in self.bindings:
                manager = binding.manager() if binding.manager is not None else None
                if manager is None or not manager.durable:
                    continue
                try:
                    report = getattr(manager.durable_backend(), "backlog", None)
                    backlog = report() if callable(report) else None
                except Exception:  # a backend that cannot say: nothing to report for it
                    continue
                if not isinstance(backlog, Mapping):
                    continue
                for queue, figures in backlog.items():
                    value = float(figures[index])
                    seen[str(queue)] = max(value, seen.get(str(queue), value))
            return [Observation(value, {semconv.ATTR_QUEUE: queue}) for queue, value in seen.items()]

        return observe

    def _from_snapshot(self, field: str) -> _Callback:
        get = attrgetter(field)

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            snapshots = [
                manager.metrics()
                for binding in self.bindings
                if binding.manager is not None and (manager := binding.manager()) is not None
            ]
            if not snapshots:
                return ()
            return (Observation(sum(get(snapshot) for snapshot in snapshots)),)

        return observe


@contextmanager
def _creating(name: str) -> Iterator[None]:
    """Turn whatever the SDK raises while creating an instrument into our ConfigurationError."""
    try:
        yield
    except Exception as exc:  # The SDK's own errors must not escape this package.
        raise ConfigurationError(f"otel metrics initialization failed: create {name}") from exc


#: Each manager's current binding, and the meter it is bound to.
_BINDINGS: weakref.WeakKeyDictionary[TaskManager, tuple[_MeterInstruments, _MeterBinding]] = weakref.WeakKeyDictionary()
#: The instruments created in each meter (weak: a provider dropped by its user takes its meters along).
_METERS: weakref.WeakKeyDictionary[Meter, _MeterInstruments] = weakref.WeakKeyDictionary()
_BINDINGS_LOCK = threading.Lock()


def _instruments_of(meter: Meter) -> _MeterInstruments:
    try:
        instruments = _METERS.get(meter)
        if instruments is None:
            instruments = _METERS[meter] = _MeterInstruments()
    except TypeError:  # a meter that cannot be weakly referenced or hashed: its instruments are not shared
        instruments = _MeterInstruments()
    return instruments


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
        latency_histogram: Record ``task_latency_seconds`` (one ``Histogram.record`` per finished task,
            the one per-task SDK call; see the package README for what it costs); ``False`` leaves
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
        new: tuple[_MeterInstruments, _MeterBinding] | None = None
        if provider is not None:
            with _creating("meter"):
                meter = provider.get_meter(
                    meter_name or semconv.DEFAULT_INSTRUMENTATION_NAME,
                    VERSION if meter_version is None else meter_version,
                )
            instruments = _instruments_of(meter)
            new = (instruments, instruments.bind(meter, manager, latency_histogram=latency_histogram))
        old = _BINDINGS.pop(manager, None)
        if old is not None:
            manager.remove_instrumentation(old[1].instrumentation)
            old[0].unbind(old[1])
        if new is not None:
            manager.add_instrumentation(new[1].instrumentation)
            _BINDINGS[manager] = new


def _latency_mode(manager: TaskManager) -> str | None:
    """How ``manager``'s latencies reach the SDK: ``"recorded"`` or ``"off"``; ``None`` unbound.

    For tests and debugging.
    """
    bound = _BINDINGS.get(manager)
    return None if bound is None else bound[1].instrumentation.latency_mode
