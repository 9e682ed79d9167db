"""SqliteAdmin beyond the conformance suite: unknown queues, idempotency keys on replay, nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MakeBackend
from helpers import task
from worker_core.admin import TaskState
from worker_core.errors import ConfigurationError
from worker_sqlite.admin import SqliteAdmin


async def test_pausing_an_unknown_queue_is_refused(make_backend: MakeBackend, db_path: Path) -> None:
    await make_backend()
    async with SqliteAdmin(str(db_path)) as admin:
        with pytest.raises(ConfigurationError, match="unknown queue"):
            await admin.pause_queue("nowhere")
        assert (await admin.pause_state()).paused_queues == ()


async def test_a_replay_whose_key_a_live_task_holds_stays_in_the_dlq(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    dead = task(idempotency_key="invoice-9")
    await backend.enqueue(dead)
    (lease,) = await backend.dequeue(1, 30.0)
    await backend.fail(lease, "boom")
    live = task(idempotency_key="invoice-9")
    await backend.enqueue(live)  # the key was freed by the dead-lettering
    async with SqliteAdmin(str(db_path)) as admin:
        moved = await admin.replay_dlq_ids([str(dead.id)])
        assert moved.count == 0
        assert (await admin.get(str(dead.id))).status is TaskState.DEAD
        assert (await admin.get(str(live.id))).status is TaskState.READY


async def test_nodes_lists_a_registered_node_after_its_first_dequeue(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    backend.register_node({"host": "box", "pid": 42, "started": 1_700_000_000.0}, lambda: 3)
    await backend.dequeue(1, 30.0)
    async with SqliteAdmin(str(db_path)) as admin:
        (node,) = await admin.nodes()
        assert (node.host, node.pid, node.running, node.started_ms) == ("box", 42, 3, 1_700_000_000_000)
        await backend.unregister_node()
        assert await admin.nodes() == []


async def test_an_admin_on_a_missing_file_refuses_and_creates_nothing(tmp_path: Path) -> None:
    """A mistyped path was created, empty, and reported as queues with nothing in them."""
    path = tmp_path / "typo.db"
    admin = SqliteAdmin.from_url(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError, match="no such database file"):
        await admin.overview()
    with pytest.raises(ConfigurationError, match="no such database file"):
        async with admin:
            pass
    assert not path.exists()
    async with SqliteAdmin(str(path), create=True) as creating:
        await creating.ping()
    assert path.exists()
    async with SqliteAdmin(str(path)) as admin:  # the file exists now
        await admin.ping()
