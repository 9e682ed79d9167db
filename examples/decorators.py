"""Tasks declared once with their defaults (``define_task``), submitted with typed arguments.

Run: ``uv run examples/decorators.py``.
"""

from __future__ import annotations

import asyncio

from worker_core import TaskManager, current_context, define_task

sent: list[str] = []


@define_task(queue="emails", priority=1, retries=2, retry_delay=0.01, timeout=5)
async def send_email(to: str, subject: str) -> str:
    if current_context().attempt == 1 and to.startswith("flaky"):
        raise ConnectionError("smtp busy")  # retried: the declaration allows 2 retries
    sent.append(to)
    return f"sent {subject!r} to {to}"


@define_task(queue="reports")
def build_report(rows: list[int]) -> int:
    return sum(rows)


async def main() -> None:
    async with TaskManager(max_workers=4, queue_weights={"emails": 3, "reports": 1}) as tm:
        first = await tm.submit(send_email, "ada@example.org", "hello")
        flaky = await tm.submit(send_email, "flaky@example.org", "again")
        now = await tm.with_options(priority=0).submit(send_email, "vip@example.org", "now")  # per-call override
        report = await tm.submit(build_report, [1, 2, 3, 4])
        for handle in (first, flaky, now):
            print(await handle, f"(attempts: {tm.get_task(handle.id).attempts})")
        print("report:", await report)
    print("sent to:", ", ".join(sorted(sent)))


if __name__ == "__main__":
    asyncio.run(main())
