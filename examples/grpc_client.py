"""A WorkerClient: register tasks, follow their results, look one up, and see a typed error.

uv run python examples/grpc_client.py --address 127.0.0.1:50051 --token s3cret
"""

from __future__ import annotations

import argparse
import asyncio

from worker_grpc import RemoteHandlerNotFoundError, TaskRequest, WorkerClient
from worker_grpc.payloads import CreateUserPayload, SendEmailPayload


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []

    # grpc.enable_http_proxy=0: talk to the server directly even when an HTTP proxy is configured.
    options = [("grpc.enable_http_proxy", 0)]
    async with WorkerClient.connect(args.address, metadata=metadata, timeout=10, options=options) as client:
        ids = await client.register_tasks(
            [
                TaskRequest("create_user", CreateUserPayload(username="ada", email="ada@example.com"), priority=1),
                TaskRequest("send_email", SendEmailPayload(to="ops@example.com", subject="hi"), queue="email"),
                TaskRequest("send_email", SendEmailPayload(to="nobody"), queue="email", weight=2),
            ]
        )
        names = dict(zip(ids, ["create_user", "send_email", "send_email (bad address)"], strict=True))
        # Results of these ids only; tasks that finished already are sent first; the stream ends by itself.
        async for result in client.stream_results(ids, close_on_completion=True):
            outcome = f"ok: {result.output}" if result.ok else f"error: {result.error}"
            print(f"{names[result.id]:<26} {outcome}")

        info = await client.get_task(ids[0])
        print(f"get_task: {info.name} is {info.status}")

        try:
            await client.register_task(TaskRequest("resize_image"))
        except RemoteHandlerNotFoundError as exc:
            print(f"refused: {exc.code.name} ({exc.details})")


if __name__ == "__main__":
    asyncio.run(main())
