"""Durable tasks in one SQLite file, nothing else to install or run: a producer and a worker in one program.

Run: ``uv run examples/sqlite_quickstart.py [path/to/tasks.db]`` (a temporary file by default). The file is
created with its schema on first use; every process of this machine that opens it shares its queues, so the
worker could as well be another process (``TaskManager(durable_backend="sqlite:///tasks.db")`` there too).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import msgspec
from worker_core import DurableTaskType, RemoteTaskError, TaskContext, TaskManager, TypedDurableRegistry
from worker_core.admin import open_admin


class Resize(msgspec.Struct):
    image: str
    width: int


resize = DurableTaskType("resize", Resize, queue="images", retries=0)
handlers = TypedDurableRegistry()


@handlers.handler(resize)
async def do_resize(ctx: TaskContext, job: Resize) -> str:
    if job.width <= 0:
        raise ValueError(f"{job.image}: width must be positive, got {job.width}")
    return f"{job.image} -> {job.width}px (delivery {ctx.attempt})"


async def main(path: Path) -> None:
    url = f"sqlite:///{path}"  # sqlite:///relative.db or sqlite:////absolute/path.db
    print(f"tasks in {path.name}")
    # The producer only declares the task type and is never started: it enqueues and awaits results.
    producer = TaskManager(durable_backend=url, durable_handlers=[resize])
    jobs = [Resize("cat.png", 640), Resize("dog.png", 0), Resize("owl.png", 128)]
    handles = [producer.handle(await producer.register_durable_task(resize.task(job))) for job in jobs]
    print(f"enqueued {len(handles)} tasks")
    # The worker runs the handlers; here in the same program, as well in another process on the same file.
    async with TaskManager(max_workers=4, durable_backend=url, durable_handlers=handlers.handlers()):
        for job, handle in zip(jobs, handles, strict=True):
            try:
                print(f"{job.image}: {await handle.result(timeout=30)}")
            except RemoteTaskError as exc:
                print(f"{job.image}: failed: {exc.error_type}: {exc.error_message}")
    recent = await producer.recent_outcomes("images", limit=10)
    print("recent outcomes:", ", ".join(sorted(outcome.status.value for outcome in recent)))
    await producer.stop_now()  # closes the file the never-started producer opened
    async with open_admin(url) as admin:  # what `workerctl durable --url sqlite:///...` uses
        for entry in (await admin.dlq()).entries:
            print(f"dead letter: {entry.handler} after {entry.attempts} delivery: {entry.last_error}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1]).resolve()))
    else:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(main(Path(folder) / "tasks.db"))
