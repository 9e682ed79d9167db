"""Shared test helpers (not a conftest: mypy sees one module per package)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from worker_core import TaskManager

#: {instrument name: {frozenset of attribute items: value (a number, or (count, sum) for the histogram)}}
Collected = dict[str, dict[frozenset[tuple[str, Any]], Any]]


def manager(**overrides: Any) -> TaskManager:
    """Four workers, rate limit off, fast retries."""
    options: dict[str, Any] = {
        "max_workers": 4,
        "max_tasks": 100,
        "tasks_per_second": None,
        "timeout": 30.0,
        "retry_delay": 0.001,
        "max_retries": 3,
    }
    options.update(overrides)
    return TaskManager(**options)


def collect(reader: InMemoryMetricReader) -> Collected:
    """Every data point the reader collects now, by instrument and attribute set."""
    out: Collected = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = out.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    key = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        points[key] = (point.count, point.sum)
                    else:
                        assert isinstance(point, NumberDataPoint)
                        points[key] = point.value
    return out


def attrs(**attributes: str) -> frozenset[tuple[str, Any]]:
    return frozenset(attributes.items())


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Poll ``condition`` (for states no event reports) with a generous deadline."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the states polled here have no event
            await asyncio.sleep(0.002)
