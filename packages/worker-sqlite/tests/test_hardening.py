"""Bad input, bad files, full disks, locks held too long, corrupt rows and cancelled calls."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import MakeBackend
from helpers import rows, task
from worker_core.durable.outcomes import UNREADABLE_TASK_ERROR
from worker_core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    DurableTaskExistsError,
    InvalidTaskError,
)
from worker_core.status import TaskStatus
from worker_sqlite import SCHEMA_VERSION, SqliteDurableBackend, parse_url
from worker_sqlite import _ops as ops
from worker_sqlite._conn import open_connection

# -- URLs and options -------------------------------------------------------------------------------


def test_urls_take_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_url("sqlite:///tasks.db").path == str(tmp_path / "tasks.db")
    assert parse_url("sqlite:///data/tasks.db").path == str(tmp_path / "data" / "tasks.db")
    assert parse_url("sqlite:////var/lib/app/tasks.db").path == "/var/lib/app/tasks.db"
    parsed = parse_url("sqlite:///t.db?busy_timeout=2.5&synchronous=normal&default_queue=jobs&extra_deliveries=1")
    assert parsed.options == {
        "busy_timeout": 2.5,
        "synchronous": "normal",
        "default_queue": "jobs",
        "extra_deliveries": 1,
    }


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/tasks.db",
        "postgresql:///tasks.db",
        "sqlite:///t.db?bogus=1",
        "sqlite:///t.db?busy_timeout=-1",
        "sqlite:///t.db?busy_timeout=nan",
        "sqlite:///t.db?extra_deliveries=many",
        "sqlite:///t.db?synchronous=sometimes",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqliteDurableBackend.from_url(url)


def test_bad_options_are_configuration_errors(tmp_path: Path) -> None:
    for options in ({"extra_deliveries": -1}, {"recent_outcomes": 0}, {"wake_interval": 0}, {"busy_timeout": True}):
        with pytest.raises(ConfigurationError):
            SqliteDurableBackend(tmp_path / "t.db", **options)
    with pytest.raises(ConfigurationError):
        SqliteDurableBackend(":memory:")
    with pytest.raises(ConfigurationError):
        SqliteDurableBackend(tmp_path / "t.db", queue_weights={"a": 0})


async def test_invalid_tasks_are_refused_and_nothing_is_stored(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    for bad in (
        task(id=None),
        task(handler=" "),
        task(payload=None),
        task(priority="high"),
        task(metadata={"k": 1}),
        task(idempotency_key=""),
        task(retry_delay=float("inf")),
    ):
        with pytest.raises(InvalidTaskError):
            await backend.enqueue(bad)
        with pytest.raises(InvalidTaskError):
            await backend.enqueue_many([task(), bad])
    assert rows(db_path, "SELECT COUNT(*) FROM tasks") == [(0,)]


# -- the file --------------------------------------------------------------------------------------


async def test_the_schema_is_created_once_and_reopening_changes_nothing(
    make_backend: MakeBackend, db_path: Path
) -> None:
    first = await make_backend()
    await first.enqueue(task())
    second = await make_backend()  # a second process opening the same file: the migration is not re-run
    assert rows(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert len(await second.dequeue(5, 30.0)) == 1


async def test_a_newer_schema_is_a_configuration_error(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    backend = SqliteDurableBackend(db_path)
    with pytest.raises(ConfigurationError, match="newer"):
        await backend.connect()
    assert not backend.is_connected


async def test_a_file_that_is_not_sqlite_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(ConfigurationError):
        await SqliteDurableBackend(path).connect()
    with pytest.raises(ConfigurationError):
        await SqliteDurableBackend(tmp_path / "missing-dir" / "t.db").connect()


async def test_another_programs_file_with_a_table_of_our_names_is_refused_untouched(tmp_path: Path) -> None:
    """A ``tasks`` table of another program: refused at connect, nothing written (it failed later, on the first
    enqueue, with "no such column: queue"); a file that only holds other tables is shared as before."""
    foreign = tmp_path / "app.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE tasks (title TEXT, done INTEGER)")
    db.execute("INSERT INTO tasks VALUES ('buy milk', 0)")
    db.commit()
    db.close()
    backend = SqliteDurableBackend(foreign)
    with pytest.raises(ConfigurationError, match=r"another program.*\(tasks\)|\(tasks\).*another program"):
        await backend.connect()
    with pytest.raises(ConfigurationError, match="another program"):
        await backend.enqueue(task())
    await backend.aclose()
    assert rows(foreign, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("tasks",)]
    assert rows(foreign, "SELECT * FROM tasks") == [("buy milk", 0)]
    assert rows(foreign, "PRAGMA user_version") == [(0,)]

    shared = tmp_path / "shared.db"
    db = sqlite3.connect(shared)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    backend = SqliteDurableBackend(shared)
    await backend.enqueue(task())
    assert len(await backend.dequeue(5, 30.0)) == 1
    await backend.aclose()


async def test_a_lock_held_too_long_is_backend_unavailable_and_loses_nothing(
    make_backend: MakeBackend, db_path: Path
) -> None:
    backend = await make_backend(busy_timeout=0.2)
    accepted = task()
    await backend.enqueue(accepted)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past our busy timeout
    try:
        with pytest.raises(BackendUnavailableError, match="locked"):
            await backend.enqueue(task())
        with pytest.raises(BackendUnavailableError):
            await backend.dequeue(1, 30.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    (lease,) = await backend.dequeue(5, 30.0)  # usable again; the accepted task is still there, alone
    assert lease.lease_id == str(accepted.id)


async def test_a_write_waits_for_another_process_transaction_and_then_goes_through(
    make_backend: MakeBackend, db_path: Path
) -> None:
    backend = await make_backend(busy_timeout=30.0)
    await backend.enqueue(task())  # the file is open and migrated
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction, ended while ours waits
    waited = task()
    async with asyncio.TaskGroup() as group:
        waiting = group.create_task(backend.enqueue(waited))
        try:
            done, _ = await asyncio.wait([waiting], timeout=0.3)
            assert not done  # it waits for the lock, up to busy_timeout
        finally:
            other.execute("COMMIT")
            other.close()
    leased = {lease.lease_id for lease in await backend.dequeue(5, 30.0)}
    assert str(waited.id) in leased


async def test_a_full_disk_is_backend_unavailable_and_loses_nothing(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    kept = [task(payload=b"k%d" % i) for i in range(5)]
    await backend.enqueue_many(kept)
    assert backend._store.writer is not None
    pages = await backend._store.writer.call(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    await backend._store.writer.call(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))  # the disk is full
    with pytest.raises(BackendUnavailableError, match="full"):
        await backend.enqueue_many([task(payload=b"x" * 20_000) for _ in range(20)])
    await backend._store.writer.call(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
    leases = await backend.dequeue(50, 30.0)
    assert sorted(lease.lease_id for lease in leases) == sorted(str(t.id) for t in kept)


async def test_a_read_only_database_is_backend_unavailable(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(kept := task())
    assert backend._store.writer is not None
    await backend._store.writer.call(lambda db: db.execute("PRAGMA query_only = ON"))
    with pytest.raises(BackendUnavailableError, match="read-only"):
        await backend.enqueue(task())
    await backend._store.writer.call(lambda db: db.execute("PRAGMA query_only = OFF"))
    assert [lease.lease_id for lease in await backend.dequeue(5, 30.0)] == [str(kept.id)]


async def test_operations_on_a_closed_backend_reopen_it(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    await backend.enqueue(task())
    await backend.aclose()
    await backend.aclose()  # idempotent
    assert len(await backend.dequeue(5, 30.0)) == 1  # opened again on use


# -- corrupt rows ----------------------------------------------------------------------------------

_CORRUPTIONS = {
    "id": "UPDATE tasks SET id = 'not-a-uuid' WHERE id = ?",
    "handler": "UPDATE tasks SET handler = '' WHERE id = ?",
    "payload": "UPDATE tasks SET payload = 'text, not a blob' WHERE id = ?",
    "attempts": "UPDATE tasks SET attempts = 'many' WHERE id = ?",
    "metadata": "UPDATE tasks SET metadata = '{broken' WHERE id = ?",
    "utf8": "UPDATE tasks SET handler = CAST(X'FFFE' AS TEXT) WHERE id = ?",
    "retries": "UPDATE tasks SET retries = 1.5 WHERE id = ?",
}


async def test_corrupt_rows_are_dead_lettered_and_never_stall_the_queue(
    make_backend: MakeBackend, db_path: Path
) -> None:
    backend = await make_backend()
    bad = {kind: task(priority=0) for kind in _CORRUPTIONS}  # priority 0: first in line
    good = [task(payload=b"%d" % i) for i in range(50)]
    await backend.enqueue_many([*bad.values(), *good])
    db = sqlite3.connect(db_path)
    for kind, sql in _CORRUPTIONS.items():
        db.execute(sql, (str(bad[kind].id),))
    db.commit()
    db.close()
    served: list[str] = []
    while leases := await backend.dequeue(10, 30.0):
        served += [lease.lease_id for lease in leases]
    assert sorted(served) == sorted(str(t.id) for t in good)
    dead = rows(db_path, "SELECT last_error FROM tasks WHERE state = 'dead'")
    assert len(dead) == len(_CORRUPTIONS)
    assert all(error.startswith("corrupt record: ") for (error,) in dead)
    # Whoever awaits such a task learns at once that it failed and why (when its id is still a UUID).
    handler_id = bad["handler"].id
    assert handler_id is not None
    outcome = await backend.get_outcome(handler_id)
    assert outcome is not None
    assert (outcome.status, outcome.error_type) == (TaskStatus.FAILED, UNREADABLE_TASK_ERROR)
    assert outcome.error_message.startswith("corrupt record: the handler")
    assert rows(db_path, "SELECT COUNT(*) FROM outcomes") == [(len(_CORRUPTIONS) - 1,)]  # not for the bad id


async def test_no_dead_letter_outcome_when_the_manager_keeps_no_results(make_backend: MakeBackend) -> None:
    backend = await make_backend(extra_deliveries=0)
    backend.configure_outcomes(None)  # TaskManager(durable_result_ttl=None)
    await backend.enqueue(never := task(retries=0))
    await backend.dequeue(1, 0.05)
    await asyncio.sleep(0.1)  # the lease runs out unsettled
    assert await backend.dequeue(1, 30.0) == []  # past its delivery limit: dead-lettered
    assert never.id is not None
    assert await backend.get_outcome(never.id) is None


# -- duplicates and cancellation -------------------------------------------------------------------


async def test_duplicate_ids_name_the_rejected_task(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    first = task(idempotency_key="order-7")
    await backend.enqueue(first)
    second = task(idempotency_key="order-7")
    with pytest.raises(DurableTaskExistsError) as raised:
        await backend.enqueue(second)
    assert raised.value.ids == (second.id,)


async def test_cancelled_calls_leave_the_backend_usable_and_consistent(
    make_backend: MakeBackend, db_path: Path
) -> None:
    backend = await make_backend()
    tasks = [task(payload=b"%d" % i) for i in range(300)]
    calls = [asyncio.create_task(backend.enqueue(t)) for t in tasks]
    await asyncio.sleep(0)
    for i, call in enumerate(calls):
        if i % 3 == 0:
            call.cancel()  # at the await, while the writer thread runs or before it started
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    returned = {str(t.id) for t, out in zip(tasks, outcomes, strict=True) if out is None}
    stored = {r[0] for r in rows(db_path, "SELECT id FROM tasks")}
    assert returned <= stored  # every enqueue that returned is stored; a cancelled one is stored or not, whole
    assert all(len(r[1]) > 0 for r in rows(db_path, "SELECT id, payload FROM tasks"))
    dequeues = [asyncio.create_task(backend.dequeue(7, 30.0)) for _ in range(20)]
    await asyncio.sleep(0)
    for dequeue in dequeues[::2]:
        dequeue.cancel()
    await asyncio.gather(*dequeues, return_exceptions=True)
    leased = {r[0] for r in rows(db_path, "SELECT id FROM tasks WHERE state = 'leased'")}
    assert leased  # the calls that ran leased tasks; cancelled ones' leases expire and redeliver
    probe = task()
    await backend.enqueue(probe)  # the connection is not left inside a transaction
    remaining = await backend.dequeue(1000, 30.0)
    assert str(probe.id) in {lease.lease_id for lease in remaining}
    assert not ({lease.lease_id for lease in remaining} & leased)  # never handed out twice
    assert backend._store.writer is not None
    assert await backend._store.writer.call(lambda db: db.in_transaction) is False


async def test_wait_for_work_wakes_on_an_enqueue_by_another_backend_object(make_backend: MakeBackend) -> None:
    worker = await make_backend()
    producer = await make_backend()
    waiting = asyncio.create_task(worker.wait_for_work(30.0))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await producer.enqueue(task())
    async with asyncio.timeout(5):  # woken by the in-process notification, not by the 30 s limit
        await waiting


async def test_wait_for_work_wakes_on_a_commit_of_another_process(make_backend: MakeBackend, db_path: Path) -> None:
    worker = await make_backend()
    waiting = asyncio.create_task(worker.wait_for_work(30.0))
    await asyncio.sleep(0.05)
    script = (
        "import sqlite3, sys, time, uuid; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "db.execute(\"INSERT OR IGNORE INTO queues (name) VALUES ('default')\"); "
        'db.execute("INSERT INTO tasks (id, queue, handler, payload, state, ready_at, enqueued_at) '
        "VALUES (?, 'default', 'work', x'31', 'ready', ?, ?)\", (str(uuid.uuid4()), time.time(), time.time()))"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(db_path))
    assert await process.wait() == 0
    async with asyncio.timeout(5):  # PRAGMA data_version noticed the other process's commit
        await waiting
    assert len(await worker.dequeue(5, 30.0)) == 1


async def test_wait_outcome_of_an_unknown_task_times_out(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    assert await backend.wait_outcome(uuid.uuid4(), 0.1) is None


async def test_an_expired_lease_keeps_its_place_in_line(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    first, later = task(), task()
    await backend.enqueue(first)
    (lease,) = await backend.dequeue(1, 0.05)
    await backend.enqueue(later)
    await asyncio.sleep(0.1)  # the lease runs out unsettled (its worker died)
    (again,) = await backend.dequeue(1, 30.0)
    assert (again.lease_id, again.attempts) == (lease.lease_id, 2)  # ahead of the task enqueued after it


_OPEN_ONE = """
import asyncio, sys
from worker_sqlite import SqliteDurableBackend

async def main() -> None:
    backend = SqliteDurableBackend(sys.argv[1])
    await backend.connect()
    await backend.aclose()
    print("opened")

asyncio.run(main())
"""


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    """Eight processes open one file that does not exist yet, at once: each gets a usable backend.

    Without retrying an immediate SQLITE_BUSY (a would-be deadlock between the WAL switch and the schema
    creation, for which SQLite never waits), one of them failed with "database is locked" (seen in CI).
    """
    path = tmp_path / "new.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_ONE, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        assert out.strip() == b"opened"


async def test_a_dequeue_does_not_visit_every_queue_name_ever_used(make_backend: MakeBackend) -> None:
    """The dequeue asked each known queue for its due tasks: 10,000 drained queues made one take 46 ms."""
    backend = await make_backend()
    await backend.enqueue_many([task(queue=f"q{i}") for i in range(500)])
    drained = 0
    while drained < 500:
        leases = await backend.dequeue(100, 30.0)
        for lease in leases:
            await backend.ack(lease)
        drained += len(leases)
    await backend.enqueue(task(queue="zz"))
    statements: list[str] = []
    assert backend._store.writer is not None
    await backend._store.writer.call(lambda db: db.set_trace_callback(statements.append))
    (lease,) = await backend.dequeue(10, 30.0)
    await backend._store.writer.call(lambda db: db.set_trace_callback(None))
    assert lease.task.queue == "zz"
    per_queue = [s for s in statements if "FROM tasks WHERE state = 'ready' AND queue = '" in s]  # params expanded
    assert len(per_queue) <= 2, len(per_queue)  # only the queue with work is asked (500 before)


async def test_an_idle_poll_does_not_walk_the_delayed_tasks_of_a_paused_queue(
    make_backend: MakeBackend, db_path: Path
) -> None:
    """Each dequeue and wait of an idle worker asks when work is next due: with 100,000 delayed tasks in a
    paused queue, that read walked all of them (22 ms per poll). Counted in SQLite VM steps, not timed."""
    backend = await make_backend()
    sooner = datetime.now(UTC) + timedelta(minutes=5)  # the paused queue's tasks come first in time
    mail_at = datetime.now(UTC) + timedelta(hours=1)
    await backend.enqueue_many([task(queue="held", run_at=sooner) for _ in range(5_000)])
    await backend.enqueue(task(queue="mail", run_at=mail_at))
    await backend.pause("held")

    def steps(db: sqlite3.Connection) -> tuple[float | None, int]:
        count = 0

        def step() -> int:
            nonlocal count
            count += 1
            return 0

        db.set_progress_handler(step, 100)
        try:
            return ops.next_event_time(db, time.time()), count
        finally:
            db.set_progress_handler(None, 0)

    db = open_connection(str(db_path), busy_timeout=5.0, synchronous="full", where="test")
    try:
        first, few = steps(db)
        assert first == pytest.approx(mail_at.timestamp(), abs=1)  # the paused queue's earlier tasks are skipped
        await backend.enqueue_many([task(queue="held", run_at=sooner) for _ in range(5_000)])
        again, still_few = steps(db)
        assert again == first
        assert still_few <= few + 2, (few, still_few)  # twice the paused tasks, the same work
        await backend.resume("held")
        assert steps(db)[0] == pytest.approx(sooner.timestamp(), abs=1)
    finally:
        db.close()
