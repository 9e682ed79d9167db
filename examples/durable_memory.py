"""Durable tasks on the in-memory backend: typed handlers, retries with backoff, a dead-letter queue.

Run: ``uv run examples/durable_memory.py``. Swap ``"memory://"`` for a Redis URL (worker-redis) and the
same code runs across many machines.
"""

from __future__ import annotations

import asyncio

import msgspec
from worker_core import DurableTask, TaskContext, TaskManager, TaskStatus, TypedDurableRegistry
from worker_core.testing import InMemoryDurableBackend


class Email(msgspec.Struct):
    to: str
    subject: str


handlers = TypedDurableRegistry()


@handlers.handler("send_email")
async def send_email(ctx: TaskContext, email: Email) -> str:
    # The payload arrives decoded (msgspec JSON by default) and validated as an Email.
    if email.to.endswith("@flaky.example") and ctx.attempt == 1:
        raise ConnectionError("smtp busy")  # nacked, delivered again after the durable backoff
    if email.to.endswith("@invalid.example"):
        raise ValueError("no such mailbox")  # no retries left: dead-lettered with this reason
    return f"sent {email.subject!r} to {email.to} (delivery {ctx.attempt})"


async def main() -> None:
    async with TaskManager(
        max_workers=2,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend="memory://",
        durable_handlers=handlers.handlers(),
        durable_poll_interval=0.05,
    ) as tm:
        with tm.subscribe_results(buffer=10) as results:
            await tm.register_durable_task(DurableTask("send_email", Email("ada@example.com", "hello"), retries=0))
            await tm.register_durable_task(DurableTask("send_email", Email("bob@flaky.example", "retry me"), retries=2))
            await tm.register_durable_task(DurableTask("send_email", Email("eve@invalid.example", "lost"), retries=0))
            for _ in range(3):
                result = await anext(results)
                outcome = result.result if result.status is TaskStatus.COMPLETED else repr(result.error)
                print(f"{result.status.value:9} {outcome}")

        backend = tm.durable_backend()
        assert isinstance(backend, InMemoryDurableBackend)
        for dead in backend.dead_letters():
            print(f"dead letter: {dead.task.handler} after {dead.attempts} delivery: {dead.error}")
        m = tm.metrics()
        print(f"scheduled {m.scheduled}, completed {m.completed}, failed {m.failed}, retried {m.retried}")


if __name__ == "__main__":
    asyncio.run(main())
