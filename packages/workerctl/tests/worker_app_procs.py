"""The app the `workerctl worker --processes` tests run (each worker process imports it afresh).

``count`` appends the task's name to ``$WORKER_TEST_OUT/done.log`` (one ``O_APPEND`` write per task, atomic
across processes), so the test sees every run, duplicates included. ``leak`` does the same and keeps 4 MiB
for good (a leaking task). ``hold`` waits for the ``release`` file. ``explode`` is a factory that always raises.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from worker_core import TaskManager
from worker_core.durable import DurableHandlerSpec

OUT = Path(os.environ.get("WORKER_TEST_OUT", "."))
_LEAKED: list[bytes] = []


def _log(name: str) -> None:
    fd = os.open(OUT / "done.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


async def count(ctx: Any, payload: Any) -> None:
    await asyncio.sleep(0.01)
    _log(str(payload["name"]))


async def leak(ctx: Any, payload: Any) -> None:
    _LEAKED.append(b"x" * (4 << 20))
    _log(str(payload["name"]))


async def hold(ctx: Any, payload: Any) -> None:
    (OUT / f"started-{payload['name']}").touch()
    while not (OUT / "release").exists():  # noqa: ASYNC110 - the test process creates the gate file
        await asyncio.sleep(0.02)
    _log(str(payload["name"]))


def create_manager(*, durable_backend: Any, max_workers: int = 4) -> TaskManager:
    return TaskManager(
        max_workers=max_workers,
        durable_backend=durable_backend,
        durable_handlers={
            "count": DurableHandlerSpec(None, count),
            "leak": DurableHandlerSpec(None, leak),
            "hold": DurableHandlerSpec(None, hold),
        },
        durable_lease=3.0,
        durable_lease_renewal_interval=0.5,
    )


def explode(*, durable_backend: Any) -> TaskManager:
    raise RuntimeError("this app cannot start")
