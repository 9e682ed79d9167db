"""Send a TaskManager's metrics to an OpenTelemetry collector over OTLP/HTTP (protobuf).

Run::

    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://localhost:4318/v1/metrics uv run python examples/otel_metrics_otlp.py

(that URL is also the default). The collector receives the nine instruments with the resource
``service.name=otel-metrics-otlp-example``; the last export happens when the provider shuts down.
"""

from __future__ import annotations

import asyncio
import os

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from worker_core import Task, TaskContext, TaskManager
from worker_otel import set_meter_provider

ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://localhost:4318/v1/metrics")


async def work(ctx: TaskContext) -> int:
    await asyncio.sleep(0.005)
    return ctx.attempt


async def main() -> None:
    exporter = OTLPMetricExporter(endpoint=ENDPOINT, timeout=10)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=1_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "otel-metrics-otlp-example"})
    )
    async with TaskManager(max_workers=4, tasks_per_second=None) as tm:
        set_meter_provider(tm, provider)
        for index in range(5):
            await tm.register_task(Task(work, name="work", queue="reports" if index % 2 else "default"))
        await tm.wait(10)
        provider.shutdown()  # final export (shutdown flushes), while the manager can still be read
    print(f"exported to {ENDPOINT}")


if __name__ == "__main__":
    asyncio.run(main())
