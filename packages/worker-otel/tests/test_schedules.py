"""Schedule tick counters: fired per schedule, skipped per schedule and reason, fed by the manager's hook."""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otel_helpers import attrs, collect, manager, until
from worker_core import Task, TaskContext
from worker_otel import semconv, set_meter_provider


async def test_ticks_fired_and_skipped_are_counted(
    meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    ran = asyncio.Event()

    def job(ctx: TaskContext) -> None:
        ran.set()

    def broken() -> Task[Any]:
        raise RuntimeError("no task today")

    async with manager() as tm:
        set_meter_provider(tm, meter_provider)
        tm.register_cron_task("ok", "* * * * * *", lambda: Task(job))
        tm.register_cron_task("broken", "* * * * * *", broken)
        tm.register_cron_task("paused", "* * * * * *", lambda: Task(job))
        await tm.pause_schedule("paused")
        async with asyncio.timeout(10):
            await ran.wait()

        def counted() -> bool:
            got = collect(metric_reader)
            skipped = got.get(semconv.METRIC_SCHEDULE_TICKS_SKIPPED, {})
            return (
                attrs(schedule="broken", reason="failed") in skipped
                and attrs(schedule="paused", reason="paused") in skipped
            )

        await until(counted)
    got = collect(metric_reader)
    assert got[semconv.METRIC_SCHEDULE_TICKS_FIRED][attrs(schedule="ok")] >= 1
    assert attrs(schedule="broken") not in got[semconv.METRIC_SCHEDULE_TICKS_FIRED]
    assert got[semconv.METRIC_SCHEDULE_TICKS_SKIPPED][attrs(schedule="broken", reason="failed")] >= 1
