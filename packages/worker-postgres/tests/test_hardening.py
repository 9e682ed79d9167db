"""What the conformance suite does not cover: migrations, URLs and the plugin, transactional enqueue and
NOTIFY-on-commit, polling mode, idempotency keys, corrupt rows, bad input, heartbeats, outcome cleanup, a
server that is down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import MakeBackend
from pg_helpers import rows, states, task
from psycopg.conninfo import conninfo_to_dict
from worker_core import ManagerState, TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask, FailureReason
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DurableTaskExistsError,
    InvalidTaskError,
    LeaseLostError,
)
from worker_core.status import TaskStatus
from worker_postgres import SCHEMA_VERSION, PostgresDurableBackend, parse_url
from worker_postgres.testing import PostgresServer, free_port, postgres_server

# -- migrations ---------------------------------------------------------------------------------------


async def test_a_missing_schema_is_a_configuration_error_that_says_how_to_migrate(pg_url: str) -> None:
    backend = PostgresDurableBackend.from_url(pg_url)
    try:
        with pytest.raises(ConfigurationError, match=r"migrate\(\).*python -m worker_postgres migrate"):
            await backend.enqueue(task())
        with pytest.raises(ConfigurationError, match="does not exist"):
            await backend.connect()
        assert await backend.migrate() == SCHEMA_VERSION
        await backend.enqueue(task())  # now it works, and nothing was created before migrate()
    finally:
        await backend.aclose()


async def test_the_command_a_missing_schema_names_migrates_that_schema(pg: PostgresServer, schema: str) -> None:
    """The error names a URL the command takes (it named ``host:port/db``, which the command refused), with the
    schema and the other connection parameters, and without the password."""
    url = f"postgresql://{pg.user}:not-shown@127.0.0.1:{pg.port}/postgres?schema={schema}&connect_timeout=9"
    backend = PostgresDurableBackend.from_url(url)
    try:
        with pytest.raises(ConfigurationError) as raised:
            await backend.connect()
        command = re.search(r"`(python -m worker_postgres migrate [^`]+)`", str(raised.value))
        assert command is not None, str(raised.value)
        assert "not-shown" not in str(raised.value)
        assert f"schema={schema}" in command[1]
        assert "connect_timeout=9" in command[1]
        argv = command[1].split()
        done = await asyncio.create_subprocess_exec(sys.executable, *argv[1:], stderr=subprocess.PIPE)
        _, stderr = await asyncio.wait_for(done.communicate(), 60)
        assert done.returncode == 0, stderr  # trust auth here: no password needed
        await backend.connect()  # the schema the backend uses is the one migrated
        await backend.enqueue(task())
    finally:
        await backend.aclose()


async def test_migrations_are_idempotent_and_serialised(pg_url: str, schema: str) -> None:
    backends = [PostgresDurableBackend.from_url(pg_url, pool_max=1) for _ in range(4)]
    try:
        assert await asyncio.gather(*(b.migrate() for b in backends)) == [SCHEMA_VERSION] * 4
        assert await backends[0].migrate() == SCHEMA_VERSION
        versions = await rows(backends[0], "SELECT version FROM {s}.schema_version ORDER BY version")
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each applied once
    finally:
        for b in backends:
            await b.aclose()


async def test_a_newer_schema_is_refused(make_backend: MakeBackend, pg_url: str) -> None:
    backend = await make_backend()
    await rows(backend, "INSERT INTO {s}.schema_version (version) VALUES (%s)", SCHEMA_VERSION + 1)
    other = PostgresDurableBackend.from_url(pg_url)
    try:
        with pytest.raises(ConfigurationError, match="upgrade worker-postgres"):
            await other.connect()
        with pytest.raises(ConfigurationError, match="newer"):
            await other.migrate()
    finally:
        await other.aclose()


def test_the_migrate_command(pg_url: str) -> None:
    for _ in range(2):  # idempotent
        done = subprocess.run(
            [sys.executable, "-m", "worker_postgres", "migrate", pg_url], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"schema at version {SCHEMA_VERSION}"
    bad = subprocess.run(
        [sys.executable, "-m", "worker_postgres", "migrate", pg_url + "&pool_max=x"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "pool_max" in bad.stderr


# -- URL and plugin -----------------------------------------------------------------------------------


def test_url_options_are_the_backends_and_the_rest_goes_to_libpq() -> None:
    parsed = parse_url("postgres://u:secret@db:6432/app?schema=jobs&listen=0&prepare=off&queues=a,b&sslmode=prefer")
    assert parsed.backend == {"schema": "jobs", "listen": False, "prepare": False, "queues": ["a", "b"]}
    assert parsed.conninfo == "postgresql://u:secret@db:6432/app?sslmode=prefer"
    assert parsed.where == "postgresql at db:6432/app"
    assert "secret" not in parsed.where
    # An empty host (libpq's Unix socket default) keeps its "//": "postgresql:/app" is no URL to libpq.
    assert parse_url("postgresql:///app?schema=jobs").conninfo == "postgresql:///app"
    assert conninfo_to_dict(parse_url("postgresql:///app?sslmode=disable").conninfo) == {
        "dbname": "app",
        "sslmode": "disable",
    }
    for bad in ("redis://x", "postgresql://h/db?listen=maybe", "postgresql://h/db?pool_max=many"):
        with pytest.raises(ConfigurationError):
            parse_url(bad)
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresDurableBackend.from_url("postgresql://h/db?schema=Robert'); DROP TABLE")


async def test_a_task_manager_reaches_the_backend_through_the_url(make_backend: MakeBackend, pg_url: str) -> None:
    await make_backend()  # migrates this test's schema
    seen: list[object] = []
    done = asyncio.Event()

    async def work(ctx: object, payload: object) -> str:
        seen.append(payload)
        done.set()
        return "ok"

    from worker_core.durable import DurableHandlerSpec

    tm = TaskManager(
        durable_backend=pg_url,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_poll_interval=0.5,
    )
    async with tm:
        task_id = await tm.register_durable_task(DurableTask("work", {"n": 1}))
        async with asyncio.timeout(15):
            await done.wait()
            handle = tm.handle(task_id)
            assert await handle.result() == "ok"
    assert seen == [{"n": 1}]


# -- transactional enqueue and NOTIFY-on-commit --------------------------------------------------------


async def test_a_transactional_enqueue_wakes_workers_only_when_it_commits(make_backend: MakeBackend) -> None:
    worker = await make_backend()
    producer = await make_backend()
    await worker.wait_for_work(0.5)  # starts LISTEN (its first connect wakes the waiter: it may have missed one)
    assert await worker.dequeue(1, 30.0) == []
    async with await psycopg.AsyncConnection.connect(producer.conninfo) as conn:
        async with conn.transaction():
            await producer.enqueue(task(), connection=conn)
            woken = asyncio.create_task(worker.wait_for_work(30.0))
            await asyncio.sleep(0.3)  # time for a NOTIFY that must not come
            assert not woken.done()  # the insert is not committed: no NOTIFY, nothing to see
            assert await worker.dequeue(5, 30.0) == []
        async with asyncio.timeout(10):
            await woken  # COMMIT delivered the NOTIFY
    assert len(await worker.dequeue(5, 30.0)) == 1


async def test_a_rolled_back_enqueue_stores_nothing(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    job = task()
    async with (
        await psycopg.AsyncConnection.connect(backend.conninfo) as conn,
        conn.transaction(force_rollback=True),
    ):
        await backend.enqueue_many([job, task()], connection=conn)
        assert await rows(backend, "SELECT count(*) FROM {s}.tasks") == [(0,)]  # not visible outside
    assert await states(backend) == {}
    await backend.enqueue(job)  # the id was never taken


async def test_polling_mode_waits_and_wakes_without_listen(make_backend: MakeBackend) -> None:
    backend = await make_backend(listen=False, prepare=False, poll_interval=0.05)
    await backend.enqueue(task(run_at=None))
    lease = (await backend.dequeue(1, 30.0))[0]
    assert task_id_of(lease.lease_id) is not None
    waiter = asyncio.create_task(backend.wait_outcome(uuid.UUID(lease.lease_id), 10.0))
    outcome = TaskOutcome(id=uuid.UUID(lease.lease_id), handler="h", queue="default", status=TaskStatus.COMPLETED)
    await backend.ack_with_outcome(lease, outcome, 60.0)
    async with asyncio.timeout(10):
        assert await waiter == outcome
    assert backend.statistics()["listening"] is False
    async with asyncio.timeout(5):
        await backend.wait_for_work(0.2)  # sleeps at most max_wait


def task_id_of(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# -- keys, bad input, corrupt rows --------------------------------------------------------------------


async def test_idempotency_key_conflict_names_the_rejected_task(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    first, second = task(idempotency_key="order-7"), task(idempotency_key="order-7")
    await backend.enqueue(first)
    with pytest.raises(DurableTaskExistsError) as raised:
        await backend.enqueue(second)
    assert raised.value.ids == (second.id,)
    lease = (await backend.dequeue(1, 30.0))[0]
    await backend.fail(lease, "gave up")  # dead-lettered: the key is free again
    await backend.enqueue(second)


async def test_a_replayed_task_whose_key_another_task_took_runs_without_it(make_backend: MakeBackend) -> None:
    from worker_postgres import PostgresAdmin

    backend = await make_backend()
    old = task(idempotency_key="k")
    await backend.enqueue(old)
    await backend.fail((await backend.dequeue(1, 30.0))[0], "boom")
    new = task(idempotency_key="k")
    await backend.enqueue(new)  # the key was free once the old one died
    admin = PostgresAdmin(backend)
    assert (await admin.replay_dlq_ids([str(old.id)])).count == 1
    keys = dict(await rows(backend, "SELECT id::text, idempotency_key FROM {s}.tasks"))
    assert keys == {str(old.id): None, str(new.id): "k"}  # both live, one key holder
    await backend.ack((await backend.dequeue(1, 30.0))[0])


async def test_values_postgres_cannot_store_are_refused_before_anything_is_written(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    good = task()
    for bad in (
        task("nul\x00handler"),
        task(metadata={"k": "nul\x00"}),
        task(priority=2**40),
        task(idempotency_key="k" * 513),
        DurableTask("h", payload="text", id=uuid.uuid4()),  # type: ignore[arg-type]
        DurableTask("h", payload=b"x"),  # no id
    ):
        with pytest.raises(InvalidTaskError):
            await backend.enqueue_many([good, bad])
    assert await states(backend) == {}


async def test_a_corrupt_row_is_dead_lettered_and_the_queue_keeps_moving(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    good = task()
    await backend.enqueue(good)
    corrupt = uuid.uuid4()
    await rows(
        backend,
        """INSERT INTO {s}.tasks (id, queue, handler, payload, metadata, available_at, ready_at, priority)
           VALUES (%s, 'default', 'h', 'x', '[1, 2]', now() - interval '1 minute', now() - interval '1 minute', 0)""",
        corrupt,
    )
    leases = await backend.dequeue(5, 30.0)
    assert [lease.lease_id for lease in leases] == [str(good.id)]
    [(state, reason)] = await rows(backend, "SELECT state, last_error FROM {s}.tasks WHERE id = %s", corrupt)
    assert (state, reason) == ("dead", "corrupt record: metadata is not a JSON object of strings")
    outcome = await backend.get_outcome(corrupt)
    assert outcome is not None
    assert outcome.status is TaskStatus.FAILED


async def test_fail_keeps_the_error_type_and_traceback(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    lease = (await backend.dequeue(1, 30.0))[0]
    await backend.fail(lease, FailureReason("ValueError: no", "ValueError", "Traceback ...\nValueError: no\x00"))
    [(error, kind, trace)] = await rows(backend, "SELECT last_error, error_type, traceback FROM {s}.tasks")
    assert (error, kind) == ("ValueError: no", "ValueError")
    assert trace.startswith("Traceback")
    with pytest.raises(LeaseLostError):
        await backend.nack(lease, 0.0)


async def test_a_lease_with_a_foreign_id_is_lost_not_a_crash(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    lease = (await backend.dequeue(1, 30.0))[0]
    lease.lease_id = "not-a-uuid"
    with pytest.raises(LeaseLostError):
        await backend.ack(lease)
    assert await backend.extend_many([lease], 30.0) == [False]


# -- heartbeats and cleanup ---------------------------------------------------------------------------


async def test_renewal_heartbeats_the_node_and_cleans_expired_outcomes(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    backend.register_node({"host": "h1", "pid": 42, "started": 1.0}, lambda: 3)
    await backend.enqueue(task())
    lease = (await backend.dequeue(1, 30.0))[0]
    expired = uuid.uuid4()
    await rows(
        backend,
        "INSERT INTO {s}.outcomes (id, queue, expires_at, data) VALUES (%s, 'default', now() - interval '1 s', 'x')",
        expired,
    )
    assert await backend.extend_many([lease], 30.0) == [True]
    [(info,)] = await rows(backend, "SELECT info FROM {s}.nodes")
    assert (info["host"], info["pid"], info["running"]) == ("h1", 42, 3)
    assert await rows(backend, "SELECT id FROM {s}.outcomes") == []  # the heartbeat deleted it
    from worker_postgres import PostgresAdmin

    [node] = await PostgresAdmin(backend).nodes()
    assert (node.id, node.host, node.pid, node.running, node.started_ms) == (backend.owner, "h1", 42, 3, 1000)
    await backend.unregister_node()
    assert await rows(backend, "SELECT id FROM {s}.nodes") == []
    assert await PostgresAdmin(backend).nodes() == []


# -- server down --------------------------------------------------------------------------------------


async def test_an_unreachable_server_is_backend_unavailable(pg: PostgresServer) -> None:
    backend = PostgresDurableBackend.from_url(
        f"postgresql://worker@127.0.0.1:{free_port()}/postgres?connect_timeout=1", pool_timeout=1.0
    )
    try:
        with pytest.raises(BackendUnavailableError):
            await backend.enqueue(task())
        with pytest.raises(BackendUnavailableError):
            await backend.dequeue(1, 30.0)
    finally:
        await backend.aclose()


async def test_a_wrong_database_is_a_configuration_error(pg: PostgresServer) -> None:
    backend = PostgresDurableBackend.from_url(pg.url_for("no_such_db"), pool_timeout=2.0)
    try:
        with pytest.raises(ConfigurationError, match="no_such_db"):
            await backend.connect()
    finally:
        await backend.aclose()


def _server_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (backends, checkpointer, ...), read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
    return [postmaster, *children]


async def test_a_frozen_server_fails_calls_after_command_timeout_and_holds_no_stop() -> None:
    """Every server process SIGSTOPped mid-task: an enqueue raises after ``command_timeout`` (it waited forever:
    libpq has no query timeout), a stop returns, and the same backend works once the server answers again."""
    started = asyncio.Event()

    async def hold(ctx: TaskContext, payload: object) -> None:
        started.set()
        await asyncio.Event().wait()  # until the stop cancels it

    with postgres_server() as server:
        backend = PostgresDurableBackend.from_url(server.url, command_timeout=1)
        await backend.migrate()
        manager = TaskManager(
            durable_backend=backend,
            durable_handlers={"work": DurableHandlerSpec(None, hold)},
            durable_codec="json",
            stop_timeout=0.5,
        )
        await manager.start()
        await manager.register_durable_task(DurableTask("work", 1))
        async with asyncio.timeout(15):
            await started.wait()
        assert server.pid is not None
        frozen = _server_processes(server.pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            unknown = task()
            async with asyncio.timeout(30):  # a hang guard: one command_timeout is 1 s
                with pytest.raises(BackendUnavailableError, match="command_timeout=1s"):
                    await backend.enqueue(unknown)
                await manager.stop_now(timeout=0.5)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert manager.state is ManagerState.STOPPED
        try:
            # The timed-out INSERT sat in the frozen server's socket: it may still run when the server resumes.
            # Sending the same task again settles it: stored once, whichever ran first.
            with contextlib.suppress(DurableTaskExistsError):
                await backend.enqueue(unknown)
            await backend.enqueue(task())  # the pool dropped the connections the freeze broke
            assert await rows(backend, "SELECT count(*) FROM {s}.tasks WHERE id = %s", unknown.id) == [(1,)]
        finally:
            await backend.aclose()
