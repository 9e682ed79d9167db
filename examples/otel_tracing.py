"""Trace every task attempt with OpenTelemetry, printed by the SDK's console exporter.

Run: ``uv run python examples/otel_tracing.py``. The ``enqueue`` span is the caller's; each attempt
is a ``worker.task`` span in the same trace, its child (the context travels in the task's metadata as
a W3C ``traceparent``). The failed first attempt of ``charge`` ends with status ERROR and its exception.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from worker_core import Task, TaskContext, TaskManager
from worker_otel import OTelTracer


async def charge(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise TimeoutError("payment gateway timed out")
    # Code inside the task sees the attempt's span as the current span.
    trace.get_current_span().add_event("charged")
    return "charged"


async def notify(ctx: TaskContext) -> str:
    return "notified"


async def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    app_tracer = provider.get_tracer("example-app")
    async with TaskManager(max_workers=2, tasks_per_second=None, retry_delay=0.01, max_retries=1) as tm:
        tm.set_tracer(OTelTracer(provider))
        with app_tracer.start_as_current_span("enqueue"):
            await tm.register_task(Task(charge, name="charge", priority=1, queue="payments"))
            await tm.register_task(Task(notify, name="notify"))
        await tm.wait(10)
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
