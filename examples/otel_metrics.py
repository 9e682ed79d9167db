"""Export a TaskManager's metrics with OpenTelemetry, printed by the SDK's console exporter.

Run: ``uv run python examples/otel_metrics.py``. It prints the nine instruments (the names go-worker
uses) once, when the provider shuts down: counters per ``queue``, the latency histogram in seconds.
"""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from worker_core import Task, TaskContext, TaskManager
from worker_otel import set_meter_provider


async def resize_image(ctx: TaskContext) -> str:
    await asyncio.sleep(0.01)
    return "resized"


async def send_email(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("smtp busy")  # the first attempt fails, the retry succeeds
    return "sent"


async def bounce(ctx: TaskContext) -> None:
    raise ValueError("mailbox does not exist")


async def main() -> None:
    # One export at shutdown: the interval is longer than the program runs.
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    async with TaskManager(max_workers=4, tasks_per_second=None, retry_delay=0.01, max_retries=2) as tm:
        set_meter_provider(tm, provider)
        for _ in range(3):
            await tm.register_task(Task(resize_image, name="resize"))
        await tm.register_task(Task(send_email, name="welcome", queue="emails"))
        await tm.register_task(Task(send_email, name="receipt", queue="emails"))
        await tm.register_task(Task(bounce, name="bounce", queue="emails", retries=0))
        await tm.wait(10)
        snapshot = tm.metrics()
        print(f"completed={snapshot.completed} failed={snapshot.failed} retried={snapshot.retried}")
        provider.shutdown()  # collects and prints, while the manager can still be read


if __name__ == "__main__":
    asyncio.run(main())
