"""The entry point, and TaskManager(durable_backend="sqlite:///...") end to end: results, nodes, batches."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import until
from worker_core import DurableHandlerSpec, DurableTask, Plugins, TaskContext, TaskManager
from worker_core.admin import open_admin
from worker_core.durable.outcomes import ResultStoreBackend
from worker_core.durable.types import (
    BatchEnqueueBackend,
    BatchExtendBackend,
    DurableBackend,
    IdempotencyKeyBackend,
    NodeRegistryBackend,
    QueueConfigurableBackend,
    ReleasableBackend,
    WakeableBackend,
)
from worker_sqlite import SqliteDurableBackend
from worker_sqlite.admin import SqliteAdmin


def test_the_entry_point_registers_the_backend_and_the_admin(tmp_path: Path) -> None:
    plugins = Plugins(autoload=True)
    backend = plugins.backends().get("sqlite")(f"sqlite:///{tmp_path}/ep.db?default_queue=jobs")
    assert isinstance(backend, SqliteDurableBackend)
    assert backend.path == str(tmp_path / "ep.db")
    admin = open_admin(f"sqlite:///{tmp_path}/ep.db", plugins=plugins)
    assert isinstance(admin, SqliteAdmin)


def test_the_backend_has_every_capability(tmp_path: Path) -> None:
    backend = SqliteDurableBackend(tmp_path / "caps.db")
    for protocol in (
        DurableBackend,
        BatchEnqueueBackend,
        BatchExtendBackend,
        NodeRegistryBackend,
        QueueConfigurableBackend,
        ReleasableBackend,
        WakeableBackend,
        ResultStoreBackend,
        IdempotencyKeyBackend,
    ):
        assert isinstance(backend, protocol), protocol.__name__


async def test_a_task_manager_on_a_sqlite_url_runs_tasks_and_keeps_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = asyncio.Event()
    release = asyncio.Event()

    async def double(ctx: TaskContext, payload: Any) -> int:
        if payload == "hold":
            started.set()
            await release.wait()
            return 0
        return int(payload) * 2

    handlers = {"double": DurableHandlerSpec(None, double)}
    url = "sqlite:///tasks.db"  # relative to the working directory
    producer = TaskManager(durable_backend=url, durable_handlers=handlers, durable_codec="json")
    async with TaskManager(durable_backend=url, durable_handlers=handlers, durable_codec="json"):
        ids = await producer.register_durable_tasks(*(DurableTask("double", n) for n in range(20)))
        results = [await producer.handle(task_id).result(timeout=30) for task_id in ids]
        assert results == [n * 2 for n in range(20)]
        await producer.register_durable_task(DurableTask("double", "hold"))
        async with asyncio.timeout(30):
            await started.wait()
        async with open_admin(url) as admin:
            nodes = await until(admin.nodes)  # the running manager heartbeats as a node
            assert [node.pid for node in nodes] == [os.getpid()]
            release.set()
    async with open_admin(url) as admin:
        assert await admin.nodes() == []  # it left the node list at stop
        assert (await admin.overview()).total_ready == 0
    await producer.stop_now()
    assert (tmp_path / "tasks.db").exists()
