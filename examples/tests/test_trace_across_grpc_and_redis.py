"""One trace from a gRPC client, through the server and Redis, to the worker that runs the task.

This crosses every package (worker-grpc, worker-redis, worker-otel, worker-core), so it lives with the
examples, whose environment has them all. It starts its own redis-server and a gRPC server on loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
import worker_grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from worker_core import TaskContext, TaskManager, TypedDurableRegistry
from worker_grpc import messages as pb
from worker_grpc.payloads import SendEmailPayload
from worker_otel import OTelTracer
from worker_redis.testing import REDIS_SERVER, RedisServer, redis_server

pytestmark = pytest.mark.needs_binary(REDIS_SERVER)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def test_one_trace_from_the_grpc_client_to_the_redis_worker(redis: RedisServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[int] = []

    registry = TypedDurableRegistry()

    @registry.handler("send_email")
    async def send_email(ctx: TaskContext, payload: SendEmailPayload) -> str:
        seen.append(trace.get_current_span().get_span_context().trace_id)
        return f"sent to {payload.to}"

    url = f"{redis.url}?prefix=trace-e2e"
    # The gRPC node only enqueues (one worker, held at zero); the worker node runs what it finds in Redis.
    api = TaskManager(max_workers=1, durable_backend=url, durable_handlers=registry.handlers())
    node = TaskManager(max_workers=2, durable_backend=url, durable_handlers=registry.handlers())
    node.set_tracer(OTelTracer(provider))
    async with api, node:
        api.set_max_workers(0)
        server = await worker_grpc.serve(api, registry, "127.0.0.1:0")
        try:
            address = f"127.0.0.1:{worker_grpc.server_port(server)}"
            async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
                payload = AnyMessage()
                payload.Pack(SendEmailPayload(to="ops@example.com"))
                with provider.get_tracer("client").start_as_current_span("signup") as client_span:
                    carrier: dict[str, str] = {}
                    inject(carrier)  # W3C traceparent of the client's span, sent as call metadata
                    await pb.WorkerServiceStub(channel).RegisterDurableTasks(
                        pb.RegisterDurableTasksRequest(tasks=[pb.DurableTask(name="send_email", payload=payload)]),
                        metadata=tuple(carrier.items()),
                    )
            deadline = time.monotonic() + 20
            while node.metrics().completed < 1:
                assert time.monotonic() < deadline, "the worker did not run the task"
                await asyncio.sleep(0.01)
        finally:
            await server.stop(None)
    trace_id = client_span.get_span_context().trace_id
    assert seen == [trace_id]
    (task_span,) = [s for s in exporter.get_finished_spans() if s.name == "worker.task"]
    assert task_span.context is not None
    assert task_span.context.trace_id == trace_id
    assert task_span.parent is not None
    assert task_span.parent.span_id == client_span.get_span_context().span_id
