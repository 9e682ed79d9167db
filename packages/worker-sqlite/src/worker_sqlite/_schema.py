"""The schema, created on first open, and its versioned migrations (``PRAGMA user_version``).

Each migration is a list of idempotent statements applied in one transaction with the version bump, so a
crash mid-migration leaves the previous version, and two processes opening a new file at once migrate it
once (the second finds the version already set). A file whose version is newer than this package knows is a
:class:`~worker_core.errors.ConfigurationError` (an older package must not write to a newer schema).
"""

from __future__ import annotations

import re
import sqlite3
from typing import Final

from worker_core.errors import ConfigurationError

from ._conn import open_connection, translate
from ._schedules import SCHEDULE_TABLES

__all__ = ("SCHEMA_VERSION", "migrate", "open_migrated")

# Task states: ready (due now), delayed (ready at ready_at), leased (held until expires_at), dead (the DLQ).
_V1: Final = (
    """CREATE TABLE IF NOT EXISTS tasks (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        handler TEXT NOT NULL,
        payload BLOB,
        priority INTEGER NOT NULL DEFAULT 1,
        weight INTEGER NOT NULL DEFAULT 1,
        retries INTEGER NOT NULL DEFAULT 0,
        retry_delay REAL NOT NULL DEFAULT 0,
        metadata TEXT,
        idempotency_key TEXT,
        state TEXT NOT NULL,
        ready_at REAL NOT NULL,
        enqueued_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        token TEXT NOT NULL DEFAULT '',
        leased_at REAL NOT NULL DEFAULT 0,
        expires_at REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        error_type TEXT NOT NULL DEFAULT '',
        traceback TEXT NOT NULL DEFAULT '',
        failed_at REAL NOT NULL DEFAULT 0
    )""",
    """CREATE INDEX IF NOT EXISTS tasks_due ON tasks (queue, priority, weight DESC, ready_at, seq)
        WHERE state = 'ready'""",
    "CREATE INDEX IF NOT EXISTS tasks_delayed ON tasks (ready_at) WHERE state = 'delayed'",
    "CREATE INDEX IF NOT EXISTS tasks_leased ON tasks (expires_at) WHERE state = 'leased'",
    "CREATE INDEX IF NOT EXISTS tasks_dead ON tasks (failed_at, seq) WHERE state = 'dead'",
    """CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency ON tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL AND state <> 'dead'""",
    "CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS outcomes (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        data BLOB NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outcomes_recent ON outcomes (queue, seq)",
    "CREATE INDEX IF NOT EXISTS outcomes_expiry ON outcomes (expires_at)",
    """CREATE TABLE IF NOT EXISTS nodes (
        id TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        last_seen REAL NOT NULL,
        expires_at REAL NOT NULL,
        leases INTEGER NOT NULL DEFAULT 0
    )""",
)

# Version 2: the admin's task browser walks each state newest first, per queue or over all of them, through an
# index (the rowid, ``seq``, breaks ties). ``tasks_delayed``, ``tasks_leased`` and ``tasks_dead`` serve the walks
# over every queue of their states; these serve the rest.
_V2: Final = (
    "CREATE INDEX IF NOT EXISTS tasks_waiting ON tasks (ready_at) WHERE state IN ('ready', 'delayed')",
    "CREATE INDEX IF NOT EXISTS tasks_waiting_queue ON tasks (queue, ready_at) WHERE state IN ('ready', 'delayed')",
    "CREATE INDEX IF NOT EXISTS tasks_leased_queue ON tasks (queue, expires_at) WHERE state = 'leased'",
    "CREATE INDEX IF NOT EXISTS tasks_dead_queue ON tasks (queue, failed_at) WHERE state = 'dead'",
)

#: Migrations in order: (version, statements). Append, never edit one that shipped.
# Version 3: the schedule tables (``_schedules.py``).
MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = ((1, _V1), (2, _V2), (3, SCHEDULE_TABLES))
#: The schema version this package writes (``PRAGMA user_version``).
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]


def migrate(db: sqlite3.Connection, where: str) -> int:
    """Bring the file's schema to :data:`SCHEMA_VERSION` (creating it on a new file); the version found.

    Raises:
        ConfigurationError: the file's schema is newer than this package.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{where}: schema version {found} is newer than this worker-sqlite knows ({SCHEMA_VERSION}); "
                "upgrade worker-sqlite"
            )
        if found == 0:
            _refuse_foreign_tables(db, where)
        for version, statements in MIGRATIONS:
            if version > found:
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {int(version)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return found


#: The tables the migrations create.
OWN_TABLES: Final = frozenset(
    match[1]
    for _, statements in MIGRATIONS
    for statement in statements
    if (match := re.match(r"\s*CREATE TABLE IF NOT EXISTS (\w+)", statement))
)


def _refuse_foreign_tables(db: sqlite3.Connection, where: str) -> None:
    """A file with no worker-sqlite schema that already has a table of one of our names is another program's.

    ``CREATE TABLE IF NOT EXISTS`` would keep that table and the first statement on it would fail (``no such
    column``); refuse the file instead, before writing anything. Other tables are fine (a file shared with an
    application's own tables).
    """
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    clash = sorted(OWN_TABLES & {str(row[0]) for row in rows})
    if clash:
        raise ConfigurationError(
            f"{where}: the file has tables named like worker-sqlite's ({', '.join(clash)}) but no worker-sqlite "
            "schema (PRAGMA user_version is 0): it belongs to another program; use a file of its own"
        )


def open_migrated(path: str, *, busy_timeout: float, synchronous: str, where: str) -> sqlite3.Connection:
    """A connection to ``path`` (see :func:`~worker_sqlite._conn.open_connection`) whose schema is current.

    Raises:
        ConfigurationError: the file cannot be opened, is not SQLite, or its schema is newer.
        BackendUnavailableError: the file stayed locked past the busy timeout.
    """
    db = open_connection(path, busy_timeout=busy_timeout, synchronous=synchronous, where=where)
    try:
        migrate(db, where)
    except sqlite3.Error as exc:
        db.close()
        raise translate(exc, where) from None
    except BaseException:
        db.close()
        raise
    return db
