"""The app the `workerctl worker` tests run: a factory that builds a durable TaskManager.

``record`` marks each task's start and end with files in ``$WORKER_TEST_OUT``; a task with ``"slow"``
waits until the test creates the ``release`` file, so the test controls when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from worker_core import TaskManager
from worker_core.durable import DurableHandlerSpec

OUT = Path(os.environ.get("WORKER_TEST_OUT", "."))


async def record(ctx: Any, payload: Any) -> str:
    name = str(payload["name"])
    (OUT / f"started-{name}").touch()
    if payload.get("slow"):
        while not (OUT / "release").exists():  # noqa: ASYNC110 - another process creates the gate file
            await asyncio.sleep(0.02)
    (OUT / f"done-{name}").touch()
    return name


#: What `--grpc-listen` serves (no in-memory handlers: the test only checks the server answers).
grpc_handlers: dict[str, Any] = {}


def create_manager(
    *, durable_backend: Any, max_workers: int = 2, queue_weights: Mapping[str, int] | None = None
) -> TaskManager:
    return TaskManager(
        max_workers=max_workers,
        tasks_per_second=None,
        queue_weights=queue_weights,
        durable_backend=durable_backend,
        durable_handlers={"record": DurableHandlerSpec(None, record)},
        durable_lease=10.0,
        durable_lease_renewal_interval=3.0,
    )


def configured(**options: Any) -> TaskManager:
    """Takes every setting workerctl may pass and writes what it got to ``$WORKER_TEST_OUT/options.json``."""
    backend = options.get("durable_backend")
    seen = {key: value for key, value in options.items() if key != "durable_backend"}
    seen["consume"] = list(getattr(backend, "queues", None) or [])
    (OUT / "options.json").write_text(json.dumps(seen))
    return TaskManager(durable_handlers={"record": DurableHandlerSpec(None, record)}, **options)


def in_memory_only() -> TaskManager:
    """An app without a durable backend: a node would consume nothing."""
    return TaskManager()


def without_handlers(*, durable_backend: Any) -> TaskManager:
    """A durable backend but no handlers."""
    return TaskManager(durable_backend=durable_backend)
