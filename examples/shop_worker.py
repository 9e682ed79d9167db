"""A worker process: implements the shared declarations and runs until SIGTERM (a graceful stop).

Run: ``WORKER_REDIS_URL=redis://localhost:6379/0 uv run examples/shop_worker.py`` (``durable_results.py``
starts it for you). The same could be run as ``workerctl worker shop_worker:manager``.
"""

from __future__ import annotations

import asyncio
import os
import signal

from shop_tasks import Order, charge
from worker_core import TaskContext, TaskManager, TypedDurableRegistry

registry = TypedDurableRegistry()


@registry.handler(charge)
async def do_charge(ctx: TaskContext, order: Order) -> dict[str, object]:
    if order.amount_cents <= 0:
        raise ValueError(f"order {order.order_id}: nothing to charge")
    await asyncio.sleep(0.01)  # pretend to call the payment provider
    return {"order": order.order_id, "charged": order.amount_cents, "attempt": ctx.attempt}


def manager() -> TaskManager:
    return TaskManager(
        max_workers=4, durable_backend=os.environ["WORKER_REDIS_URL"], durable_handlers=registry.handlers()
    )


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with manager():
        print("worker ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
