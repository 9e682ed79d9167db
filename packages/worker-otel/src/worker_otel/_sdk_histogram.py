"""Merge pre-aggregated task latencies into the OpenTelemetry SDK's storage of ``task_latency_seconds``.

Why: the SDK's ``Histogram.record`` costs about 5 us per call, as much as the manager spends on a
no-op task, and SDK 1.45 offers no public way (no ``MetricProducer``) to hand it pre-aggregated
points. So the event loop keeps cheap per-series buckets (:mod:`worker_otel._instrumentation`) and,
when a reader collects, a metrics callback merges them into the SDK's own aggregations of our
``Histogram`` instrument: the SDK runs the observable callbacks before its reader storage collects,
under the same lock. The merge does what ``record`` would have done sample by sample, for every
reader storage (so each reader, cumulative or delta, reports every sample exactly once):
bucket counts, sum, min and max under the aggregation's lock, the aggregation created through the
SDK's own ``_get_or_create_aggregation`` (cardinality limit and overflow included) under the view
match's lock, exactly as ``record`` holds them.

This touches SDK internals, so it is only used when all of these hold (:func:`latency_sink` checks
them once per histogram instrument and logs the reason at INFO otherwise); every other case records
each sample through ``Histogram.record``, the same data for about 5 us more per task:

- opentelemetry-sdk of a verified minor version (:data:`VERIFIED_SDK_VERSIONS`), on a CPython with
  the GIL (the event-loop hand-over relies on it; free-threaded builds record each sample);
- an SDK ``Histogram`` with the structures this module reads (checked by name and type);
- every view the reader storages match to the instrument either drops it or keeps an explicit bucket
  histogram with our boundaries (:data:`~worker_otel.semconv.LATENCY_BUCKETS_S`); views may rename
  it, change its description or keep a subset of its attributes (``attribute_keys``) — a view that
  changes the boundaries or the aggregation (exponential, sum, ...) means ``record`` per sample;
- an exemplar filter other than ``AlwaysOnExemplarFilter``: merged samples carry no exemplars (with
  the default ``TraceBasedExemplarFilter`` a latency has none anyway: the manager reports it after
  the attempt's span ended).

A reader added later (``MeterProvider.add_metric_reader``) whose storage does not pass these checks
turns the instruments to ``record`` per sample from then on; that reader misses the samples pending
at that moment (logged as a warning).
"""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Final, final

from . import semconv

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._instrumentation import Pending, Series

__all__ = ("VERIFIED_SDK_VERSIONS", "LatencySink", "latency_sink")

logger = logging.getLogger("worker_otel.metrics")

#: (major, minor) of the opentelemetry-sdk releases whose internals this module was checked against.
VERIFIED_SDK_VERSIONS: Final = frozenset({(1, 45)})

_BOUNDS: Final = tuple(float(bound) for bound in semconv.LATENCY_BUCKETS_S)


class _Internals:
    """The SDK classes and helpers the merge uses, looked up by name (raises when one is missing).

    Typed ``Any``: these are private SDK names, checked at run time, not by the type checker.
    """

    def __init__(self) -> None:
        aggregation = importlib.import_module("opentelemetry.sdk.metrics._internal.aggregation")
        match = importlib.import_module("opentelemetry.sdk.metrics._internal._view_instrument_match")
        consumer = importlib.import_module("opentelemetry.sdk.metrics._internal.measurement_consumer")
        storage = importlib.import_module("opentelemetry.sdk.metrics._internal.metric_reader_storage")
        instrument = importlib.import_module("opentelemetry.sdk.metrics._internal.instrument")
        exemplar = importlib.import_module("opentelemetry.sdk.metrics")
        self.histogram_aggregation: Any = aggregation._ExplicitBucketHistogramAggregation
        self.drop_aggregation: Any = aggregation._DropAggregation
        self.delta: object = aggregation.AggregationTemporality.DELTA
        self.view_match: Any = match._ViewInstrumentMatch
        self.hash_attributes: Any = match._hash_attributes
        self.consumer: Any = consumer.SynchronousMeasurementConsumer
        self.storage: Any = storage.MetricReaderStorage
        self.histogram: Any = instrument.Histogram
        self.always_on: Any = exemplar.AlwaysOnExemplarFilter
        for cls, names in (
            (self.view_match, ("_get_or_create_aggregation", "collect", "consume_measurement")),
            (self.storage, ("_get_or_init_view_instrument_match", "collect")),
            (self.histogram_aggregation, ("aggregate", "collect")),
        ):
            missing = [name for name in names if not callable(getattr(cls, name, None))]
            if missing:
                raise LookupError(f"{cls.__name__} has no {', '.join(missing)}")


_internals: _Internals | None = None
_logged: set[str] = set()


def _log_once(level: int, message: str, *args: object) -> None:
    """Log ``message`` the first time this process meets it (one line per reason, not one per binding)."""
    text = message % args
    if text not in _logged:
        _logged.add(text)
        logger.log(level, "%s", text)


def latency_sink(histogram: object) -> LatencySink | None:
    """A sink merging into ``histogram``'s SDK storage, or ``None``: record each sample instead (reason logged)."""
    try:
        reason = _unsupported(histogram)
    except Exception as exc:  # an SDK shaped differently from what we checked: never fail the binding
        reason = f"unexpected SDK internals ({type(exc).__name__}: {exc})"
    if reason is not None:
        _log_once(logging.INFO, "task_latency_seconds: recording each sample through the SDK: %s", reason)
        return None
    assert _internals is not None  # set by _unsupported
    return LatencySink(histogram, _internals)


def _unsupported(histogram: object) -> str | None:
    """Why the merge cannot serve ``histogram`` (``None``: it can)."""
    global _internals
    gil = getattr(sys, "_is_gil_enabled", None)
    if gil is not None and not gil():
        return "free-threaded Python"
    sdk_version = version("opentelemetry-sdk")
    if tuple(int(part) for part in sdk_version.split(".")[:2]) not in VERIFIED_SDK_VERSIONS:
        return f"opentelemetry-sdk {sdk_version} is not a verified version"
    if _internals is None:
        _internals = _Internals()
    internals = _internals
    if not isinstance(histogram, internals.histogram):
        return f"{type(histogram).__name__} is not the SDK's Histogram"
    sdk: Any = histogram
    consumer = sdk._measurement_consumer
    if type(consumer) is not internals.consumer:
        return f"measurement consumer {type(consumer).__name__}"
    if not callable(getattr(sdk, "_is_enabled", None)):
        return "the instrument has no _is_enabled"
    if isinstance(consumer._sdk_config.exemplar_filter, internals.always_on):
        return "AlwaysOnExemplarFilter asks for exemplars"
    return LatencySink(histogram, internals).unsupported_view()


def _mergeable(internals: _Internals, match: Any) -> bool | None:
    """``True``: merge into this view match; ``None``: it drops the instrument; ``False``: cannot merge."""
    if type(match) is not internals.view_match:
        return False
    template = match._aggregation
    if isinstance(template, internals.drop_aggregation):
        return None
    return (
        type(template) is internals.histogram_aggregation
        and template._instrument_aggregation_temporality is internals.delta
        and tuple(template._boundaries) == _BOUNDS
        and isinstance(match._attributes_aggregation, dict)
    )


@final
class LatencySink:
    """Merges taken latency samples into every reader storage of one SDK histogram instrument."""

    __slots__ = ("_consumer", "_instrument", "_internals", "degraded")

    def __init__(self, histogram: Any, internals: _Internals) -> None:
        self._instrument: Any = histogram
        self._consumer: Any = histogram._measurement_consumer
        self._internals = internals
        #: Set once a view match that cannot be merged into showed up (a reader added later).
        self.degraded = False

    def _matches(self) -> list[Any]:
        # Resolving the views early is what the first record() would do; a match with no
        # attribute set yet reports nothing.
        matches: list[Any] = []
        for storage in tuple(self._consumer._reader_storages.values()):
            if type(storage) is not self._internals.storage:
                raise TypeError(f"reader storage {type(storage).__name__}")
            matches.extend(storage._get_or_init_view_instrument_match(self._instrument))
        return matches

    def unsupported_view(self) -> str | None:
        """Why some reader's view of the instrument cannot take merges (``None``: all can)."""
        for match in self._matches():
            if _mergeable(self._internals, match) is False:
                return f"a view or reader aggregates it as {type(match._aggregation).__name__.lstrip('_')}"
        return None

    def merge(self, taken: Sequence[tuple[Series, Pending]]) -> None:
        """Add ``taken`` to every reader storage, as ``record`` would have sample by sample."""
        if not taken or not self._instrument._is_enabled():  # a disabled meter drops samples, as record does
            return
        internals = self._internals
        hash_attributes = internals.hash_attributes
        for match in self._matches():
            mergeable = _mergeable(internals, match)
            if mergeable is None:
                continue
            if not mergeable:
                self.degraded = True
                continue
            keys = match._view._attribute_keys
            aggregations: dict[Any, Any] = match._attributes_aggregation
            with match._lock:  # held as record() holds it: a delta collection cannot drop the aggregation meanwhile
                for series, pending in taken:
                    if keys is None:
                        attributes = dict(series.attributes)
                    else:
                        attributes = {k: v for k, v in series.attributes.items() if k in keys}
                    key = hash_attributes(attributes)
                    aggregation = aggregations.get(key)
                    if aggregation is None:
                        before = len(match._attributes_aggregation)
                        aggregation = match._get_or_create_aggregation(key, attributes)
                        if (
                            len(match._attributes_aggregation) > before
                            and match._previous_collection_start_nanos is None
                        ):
                            _start_at(aggregation, series.created_ns)
                    if type(aggregation) is not internals.histogram_aggregation:
                        self.degraded = True
                        continue
                    _add(aggregation, pending)
        if self.degraded:
            _log_once(
                logging.WARNING,
                "task_latency_seconds: a metric reader aggregates the histogram differently; recording each "
                "sample through the SDK from now on (that reader misses the samples pending until now)",
            )


def _start_at(aggregation: Any, created_ns: int) -> None:
    """Date a new series' first interval from the series' creation, not from the first collection.

    ``record`` creates the aggregation at the first sample; the merge creates it at collection, after
    the samples it holds, so without this the start time would follow them.
    """
    if created_ns < aggregation._start_time_unix_nano:
        aggregation._start_time_unix_nano = created_ns
        aggregation._previous_collection_start_nano = created_ns


def _add(aggregation: Any, pending: Pending) -> None:
    """What ``aggregate`` does for each of ``pending``'s samples, at once (no exemplars)."""
    with aggregation._lock:
        counts = aggregation._value
        if counts is None:
            aggregation._value = list(pending.counts)
        else:
            for index, count in enumerate(pending.counts):
                if count:
                    counts[index] += count
        aggregation._sum += pending.sum
        if aggregation._record_min_max:
            if pending.min < aggregation._min:
                aggregation._min = pending.min
            if pending.max > aggregation._max:
                aggregation._max = pending.max
