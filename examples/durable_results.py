"""Results across processes: a producer enqueues durable tasks, a separate worker process runs them, and the
producer awaits each result (woken by Redis when the worker acks, no polling).

Run: ``WORKER_REDIS_URL=redis://localhost:6379/0 uv run examples/durable_results.py`` (start a Redis first).
The producer imports only the declarations (``shop_tasks.py``), never the handler code (``shop_worker.py``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from subprocess import DEVNULL

from shop_tasks import Order, charge
from worker_core import RemoteTaskError, TaskManager

HERE = Path(__file__).resolve().parent


async def main() -> None:
    # A producer: declarations only, never started (it leases nothing), just enqueues and awaits.
    producer = TaskManager(durable_backend=os.environ["WORKER_REDIS_URL"], durable_handlers=[charge])
    orders = [Order("A-1", 1250), Order("A-2", 0), Order("A-3", 999)]
    handles = [producer.handle(await producer.register_durable_task(charge.task(order))) for order in orders]
    print(f"enqueued {len(handles)} orders; starting a worker process")
    worker = await asyncio.create_subprocess_exec(sys.executable, str(HERE / "shop_worker.py"), stdout=DEVNULL)
    try:
        for order, handle in zip(orders, handles, strict=True):
            try:
                print(f"{order.order_id}: {await handle.result(timeout=30)}")
            except RemoteTaskError as exc:
                print(f"{order.order_id}: failed in the worker: {exc.error_type}: {exc.error_message}")
        recent = await producer.recent_outcomes("payments", limit=10)
        print("recent outcomes in payments:", ", ".join(sorted(o.status.value for o in recent)))
    finally:
        worker.terminate()
        async with asyncio.timeout(30):
            await worker.wait()
        await producer.stop_now()  # a never-started manager too: closes the connection it built from the URL


if __name__ == "__main__":
    asyncio.run(main())
