"""A WorkerService server: typed handlers, bearer-token auth, graceful shutdown on Ctrl-C / SIGTERM.

    uv run python examples/grpc_server.py --port 50051 --token s3cret
    uv run python examples/grpc_client.py --address 127.0.0.1:50051 --token s3cret

A go-worker client works against it unchanged (same proto, same service).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import worker_grpc
from worker_core import TaskContext, TaskManager
from worker_grpc.payloads import CreateUserPayload, CreateUserResponse, SendEmailPayload

registry = worker_grpc.HandlerRegistry()


@registry.handler("create_user")
async def create_user(ctx: TaskContext, payload: CreateUserPayload) -> CreateUserResponse:
    await asyncio.sleep(0.05)  # pretend to call a user store
    return CreateUserResponse(user_id=f"user-{payload.username}")


@registry.handler("send_email")
def send_email(ctx: TaskContext, payload: SendEmailPayload) -> str:  # a plain function runs in a thread
    if "@" not in payload.to:
        raise ValueError(f"bad address {payload.to!r}")
    return f"sent {payload.subject!r} to {payload.to}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=50051, help="0 picks a free port")
    parser.add_argument("--token", default="", help="require 'authorization: Bearer <token>'")
    args = parser.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    auth = worker_grpc.BearerTokenAuth({args.token}) if args.token else None
    async with TaskManager(max_workers=4, max_tasks=1000, tasks_per_second=None) as manager:
        server = await worker_grpc.serve(manager, registry, f"127.0.0.1:{args.port}", auth=auth)
        print(f"listening on 127.0.0.1:{worker_grpc.server_port(server)}", flush=True)
        await stop.wait()
        await server.stop(grace=5)  # finish in-flight calls, then the manager finishes its tasks
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
