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
from worker_core.durable.outcomes import RemoteTaskError, ResultStoreBackend
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


async def test_a_handle_on_a_replayed_task_waits_for_the_replay(tmp_path: Path) -> None:
    """The node that ran a task and saw it fail still holds its FAILED record: after a DLQ replay, a handle
    asked for then waits for the new run's outcome instead of raising the old error at once."""
    fixed = False

    async def send(ctx: TaskContext, payload: Any) -> str:
        if not fixed:
            raise ConnectionRefusedError("relay down")
        return f"sent {payload}"

    handlers = {"send": DurableHandlerSpec(None, send)}
    url = f"sqlite:///{tmp_path}/replay.db"
    async with TaskManager(durable_backend=url, durable_handlers=handlers, durable_codec="json") as tm:
        task_id = await tm.register_durable_task(DurableTask(handler="send", payload=b'"ada"', retries=0))
        with pytest.raises(RemoteTaskError, match="relay down"):
            await tm.handle(task_id).result(timeout=10)
        async with SqliteAdmin(str(tmp_path / "replay.db")) as admin:
            await admin.pause()  # the replayed task cannot be leased yet
            fixed = True
            assert (await admin.replay_dlq_ids([str(task_id)])).count == 1
            handle = tm.handle(task_id)
            assert not handle.done()
            with pytest.raises(TimeoutError):
                await handle.result(timeout=0.05)
            await admin.resume()
        assert await tm.handle(task_id).result(timeout=10) == "sent ada"
        assert await handle.result(timeout=10) == "sent ada"
