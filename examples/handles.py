"""Task handles: submit functions with their own arguments and await each one's result.

Run: ``uv run examples/handles.py``.
"""

from __future__ import annotations

import asyncio

from worker_core import TaskCancelledError, TaskManager, TaskTimeoutError, current_context


async def fetch(url: str, *, attempt_note: bool = False) -> str:
    ctx = current_context()  # the attempt's context, with no ctx parameter
    await asyncio.sleep(0.01)  # pretend to fetch
    return f"{url} (attempt {ctx.attempt})" if attempt_note else url


def word_count(text: str) -> int:
    return len(text.split())  # a plain function: runs in the manager's thread pool


async def slow() -> None:
    await asyncio.sleep(60)


async def main() -> None:
    async with TaskManager(max_workers=4) as tm:
        pages = [await tm.submit(fetch, f"https://example.org/{n}") for n in range(3)]
        urgent = await tm.with_options(priority=0, name="urgent").submit(
            fetch, "https://example.org/now", attempt_note=True
        )
        count = await tm.submit(word_count, "the quick brown fox")
        print("fetched:", [await page for page in pages])
        print("urgent:", await urgent)
        print("words:", await count.result(timeout=5))

        late = await tm.with_options(timeout=0.05).submit(slow)
        try:
            await late
        except TaskTimeoutError:
            print("slow: timed out after 0.05s")
        stuck = await tm.submit(slow)
        await stuck.cancel()
        try:
            await stuck
        except TaskCancelledError:
            print("stuck:", stuck.status.value if stuck.status else None)


if __name__ == "__main__":
    asyncio.run(main())
