"""Tasks from code with no event loop (a Flask/Django view, a script, a Jupyter cell): BlockingManager.

Run: ``uv run examples/sync_caller.py``.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from worker_core import BlockingManager

tasks = BlockingManager(max_workers=4)  # starts on first use, stops at exit (or tasks.close())


async def thumbnail(image: str, size: int) -> str:
    await asyncio.sleep(0.01)  # pretend to resize
    return f"{image}@{size}px"


def view(request_id: int) -> str:
    """What a WSGI view does: enqueue, then wait for the result with a bound."""
    handle = tasks.submit(thumbnail, f"img-{request_id}.png", 128)
    return f"request {request_id} ({threading.current_thread().name}): {handle.result(timeout=5)}"


def main() -> None:
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="web") as web:
        for line in sorted(web.map(view, range(6))):
            print(line)
    tasks.close()
    print("closed")


if __name__ == "__main__":
    main()
