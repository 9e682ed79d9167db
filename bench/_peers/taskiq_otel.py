"""taskiq's side of ``bench/otel_overhead.py``: its built-in OpenTelemetry middleware on an in-memory broker.

Run inside its own virtualenv (``bench/.envs/taskiq-otel``, made by ``bench/otel_overhead.py``):
``python taskiq_otel.py WORKLOAD N`` runs each configuration once, in the order given by ``BENCH_ORDER``
(comma-separated), and prints one JSON object ``{configuration: tasks per second}``.

The flow: ``N`` tasks sent with ``.kiq()`` to an ``InMemoryBroker`` (which runs each in an asyncio task of its
own, as our manager does), then ``broker.wait_all()``; collecting metrics and exporting spans are inside the
timed window, as on our side. Configurations:

- ``off``: no middleware.
- ``metrics``: ``OpenTelemetryMiddleware`` with the real SDK ``MeterProvider`` (an ``InMemoryMetricReader``,
  collected at the end) and the API's no-op tracer provider.
- ``tracing``: ``OpenTelemetryMiddleware`` with the real SDK ``TracerProvider`` (every span sampled, a
  ``SimpleSpanProcessor`` handing each span to an exporter that drops it) and the no-op meter provider.
  taskiq's middleware records two spans per task: ``send/<task>`` in the producer and ``execute/<task>``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider
from taskiq import InMemoryBroker  # type: ignore[import-not-found, unused-ignore]
from taskiq.middlewares.opentelemetry_middleware import (  # type: ignore[import-not-found, unused-ignore]
    OpenTelemetryMiddleware,
)

#: The same clock as bench/otel_overhead.py (which passes BENCH_CLOCK on): CPU time unless "wall".
CLOCK = time.perf_counter if os.environ.get("BENCH_CLOCK") == "wall" else time.process_time


class _DropSpans(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


async def _noop() -> None:
    return None


async def _cpu_100us() -> None:
    deadline = time.thread_time() + 100e-6  # CPU time: a descheduled task still does its 100 us of work
    while time.thread_time() < deadline:
        pass


WORKLOADS: dict[str, Callable[[], Any]] = {"async no-op": _noop, "async 100 us CPU": _cpu_100us}


async def _throughput(name: str, workload: str, n: int) -> float:
    broker = InMemoryBroker(max_stored_results=100)
    finish: Callable[[], None] = lambda: None  # noqa: E731
    if name == "metrics":
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        middleware = OpenTelemetryMiddleware(tracer_provider=NoOpTracerProvider(), meter_provider=meter_provider)
        broker.add_middlewares(middleware)

        def collect() -> None:
            data = reader.get_metrics_data()
            meter_provider.shutdown()
            counted = sum(
                getattr(point, "count", 0)
                for resource in (data.resource_metrics if data is not None else ())
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name == "task_execution_time"
                for point in metric.data.data_points
            )
            if counted != n:
                raise RuntimeError(f"taskiq metrics: the execution-time histogram counts {counted} of {n} tasks")

        finish = collect
    elif name == "tracing":
        exporter = _DropSpans()
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        middleware = OpenTelemetryMiddleware(tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider())
        broker.add_middlewares(middleware)

        def flush() -> None:
            tracer_provider.shutdown()
            if exporter.exported != 2 * n:
                raise RuntimeError(f"taskiq tracing: {exporter.exported} spans exported for {n} tasks")

        finish = flush
    task = broker.task(task_name="noop")(WORKLOADS[workload])
    await broker.startup()
    try:
        started = CLOCK()
        for _ in range(n):
            await task.kiq()
        await broker.wait_all()
        finish()
        elapsed = CLOCK() - started
    finally:
        await broker.shutdown()
    return n / elapsed


async def main() -> None:
    workload, n = sys.argv[1], int(sys.argv[2])
    order = os.environ.get("BENCH_ORDER", "off,metrics,tracing").split(",")
    await _throughput("off", workload, max(1, n // 10))  # warm up imports and caches
    out: dict[str, float] = {}
    for name in order:
        gc.collect()
        out[name] = await _throughput(name, workload, n)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
