"""Durable tasks over gRPC: RegisterDurableTasks into a TaskManager with a durable backend.

    uv run python examples/grpc_durable.py                                   # in-memory backend
    uv run python examples/grpc_durable.py --redis-url redis://127.0.0.1:6379/0?prefix=demo

One typed registry serves both sides: the manager runs the tasks with it, the server decodes the
`Any` payloads with it. The in-memory backend keeps this self-contained; with a Redis URL (worker-redis,
found through the backend plugin) the same tasks survive a restart and run on any node.
"""

from __future__ import annotations

import argparse
import asyncio

import worker_grpc
from worker_core import TaskContext, TaskManager
from worker_core.durable import TypedDurableRegistry
from worker_core.testing import InMemoryDurableBackend
from worker_grpc import DurableTaskRequest, RemoteTaskExistsError, WorkerClient
from worker_grpc.payloads import SendEmailPayload, SendEmailResponse

registry = TypedDurableRegistry()
attempts: dict[str, int] = {}


@registry.handler("send_email")
async def send_email(ctx: TaskContext, payload: SendEmailPayload) -> SendEmailResponse:
    attempts[payload.to] = attempts.get(payload.to, 0) + 1
    if payload.to.startswith("flaky") and attempts[payload.to] == 1:
        raise ConnectionError("smtp timeout")  # nacked, delivered again after the backoff
    return SendEmailResponse(message_id=f"msg-{payload.to}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", default="", help="a redis:// URL; the in-memory backend when omitted")
    args = parser.parse_args()
    backend: InMemoryDurableBackend | str = args.redis_url or InMemoryDurableBackend()
    async with TaskManager(
        max_workers=2,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend=backend,
        durable_handlers=registry.handlers(),
    ) as manager:
        server = await worker_grpc.serve(manager, registry, "127.0.0.1:0")
        address = f"127.0.0.1:{worker_grpc.server_port(server)}"
        options = [("grpc.enable_http_proxy", 0)]  # loopback: never through an HTTP proxy
        async with WorkerClient.connect(address, timeout=10, options=options) as client:
            request = DurableTaskRequest(
                "send_email",
                SendEmailPayload(to="ops@example.com", subject="Hello durable gRPC", body="Persisted task"),
                idempotency_key="durable:send_email:ops@example.com",
                queue="email",
            )
            first = await client.register_durable_task(request)
            again = await client.register_durable_task(request)  # same key, same task: same id, enqueued once
            print(f"idempotent: {first == again}")
            flaky = await client.register_durable_task(
                DurableTaskRequest("send_email", SendEmailPayload(to="flaky@example.com"), retries=2)
            )
            names = {first: "ops", flaky: "flaky"}
            async for result in client.stream_results([first, flaky], close_on_completion=True):
                print(f"{names[result.id]}: {result.output or result.error}")
            print(f"flaky attempts: {attempts['flaky@example.com']}")

            try:
                changed = DurableTaskRequest("send_email", SendEmailPayload(to="other@example.com"))
                await client.register_durable_task(
                    DurableTaskRequest(changed.name, changed.payload, idempotency_key=request.idempotency_key)
                )
            except RemoteTaskExistsError as exc:
                print(f"refused: {exc.code.name}")
        await server.stop(grace=1)


if __name__ == "__main__":
    asyncio.run(main())
