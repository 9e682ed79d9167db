"""The versioned schema: migrations applied in order under an advisory lock, and the check every backend makes.

Nothing here runs at import or at connect: :func:`migrate` is called explicitly (``await backend.migrate()`` or
``python -m worker_postgres migrate URL``). A backend whose schema is missing or older raises
:class:`~worker_core.errors.ConfigurationError` naming both ways to migrate.
"""

from __future__ import annotations

import re
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg import errors as pgerrors
from worker_core.errors import ConfigurationError

from ._schedules import SCHEDULE_TABLES

__all__ = ("MIGRATIONS", "SCHEMA_VERSION", "check_schema", "migrate", "valid_schema")

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

# Each migration is a list of statements; ``{s}`` is the quoted schema name, ``{wake}``/``{done}`` the channels.
_V1: Final = [
    """CREATE TABLE {s}.queues (
        name text PRIMARY KEY,
        paused boolean NOT NULL DEFAULT false
    )""",
    """CREATE TABLE {s}.control (
        id int PRIMARY KEY CHECK (id = 1),
        paused boolean NOT NULL DEFAULT false
    )""",
    "INSERT INTO {s}.control (id, paused) VALUES (1, false)",
    """CREATE TABLE {s}.tasks (
        id uuid PRIMARY KEY,
        queue text NOT NULL,
        handler text NOT NULL,
        payload bytea NOT NULL,
        priority int NOT NULL DEFAULT 1,
        weight int NOT NULL DEFAULT 1,
        retries int NOT NULL DEFAULT 0,
        retry_delay double precision NOT NULL DEFAULT 0,
        metadata jsonb,
        idempotency_key text,
        state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'leased', 'dead')),
        available_at timestamptz NOT NULL,
        ready_at timestamptz NOT NULL,
        attempts int NOT NULL DEFAULT 0,
        token text,
        enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        seq bigserial NOT NULL,
        last_error text NOT NULL DEFAULT '',
        error_type text NOT NULL DEFAULT '',
        traceback text NOT NULL DEFAULT '',
        failed_at timestamptz
    )""",
    # The claim: per queue, ready tasks by priority, then weight, then ready time, then enqueue order (what is
    # due is filtered by ``available_at``); expired leases by expiry. Separate partial indexes, so that neither
    # scan walks over the rows of the other state (however many tasks are leased or delayed).
    """CREATE INDEX tasks_claim ON {s}.tasks (queue, priority, weight DESC, ready_at, seq)
        WHERE state = 'ready'""",
    "CREATE INDEX tasks_next ON {s}.tasks (queue, available_at) WHERE state = 'ready'",
    "CREATE INDEX tasks_leased ON {s}.tasks (queue, available_at) WHERE state = 'leased'",
    "CREATE INDEX tasks_dead ON {s}.tasks (failed_at, seq) WHERE state = 'dead'",
    # At most one live task (ready, delayed or leased) per idempotency key; dead-lettering frees the key.
    """CREATE UNIQUE INDEX tasks_idempotency ON {s}.tasks (idempotency_key)
        WHERE idempotency_key IS NOT NULL AND state <> 'dead'""",
    """CREATE TABLE {s}.outcomes (
        id uuid PRIMARY KEY,
        queue text NOT NULL,
        finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        expires_at timestamptz NOT NULL,
        data bytea NOT NULL
    )""",
    "CREATE INDEX outcomes_recent ON {s}.outcomes (queue, finished_at DESC)",
    "CREATE INDEX outcomes_expiry ON {s}.outcomes (expires_at)",
    """CREATE TABLE {s}.nodes (
        id text PRIMARY KEY,
        info jsonb NOT NULL,
        last_seen timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    )""",
    # Wake-ups: sent at commit (NOTIFY is transactional), identical ones of one transaction folded into one.
    """CREATE FUNCTION {s}.notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify({wake}, ''); RETURN NULL; END $$""",
    """CREATE TRIGGER tasks_ready AFTER INSERT OR UPDATE OF state, available_at ON {s}.tasks
        FOR EACH ROW WHEN (NEW.state = 'ready') EXECUTE FUNCTION {s}.notify_ready()""",
    """CREATE FUNCTION {s}.notify_done() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify({done}, NEW.id::text); RETURN NULL; END $$""",
    """CREATE TRIGGER outcomes_done AFTER INSERT OR UPDATE ON {s}.outcomes
        FOR EACH ROW EXECUTE FUNCTION {s}.notify_done()""",
]

# Version 2: the admin's task browser walks each state newest first, per queue or over all of them, with the row
# order (``seq``) breaking ties: the per-queue indexes gain ``seq`` (the claim's next-due lookups use them as
# before), and ready and leased rows get an index over every queue. Built in the migration's transaction: writes
# to the tasks table wait for it (on a large table, migrate when the workers are stopped or quiet).
_V2: Final = [
    "DROP INDEX IF EXISTS {s}.tasks_next",
    "CREATE INDEX tasks_next ON {s}.tasks (queue, available_at, seq) WHERE state = 'ready'",
    "DROP INDEX IF EXISTS {s}.tasks_leased",
    "CREATE INDEX tasks_leased ON {s}.tasks (queue, available_at, seq) WHERE state = 'leased'",
    "CREATE INDEX IF NOT EXISTS tasks_ready_all ON {s}.tasks (available_at, seq) WHERE state = 'ready'",
    "CREATE INDEX IF NOT EXISTS tasks_leased_all ON {s}.tasks (available_at, seq) WHERE state = 'leased'",
    "CREATE INDEX IF NOT EXISTS tasks_dead_queue ON {s}.tasks (queue, failed_at, seq) WHERE state = 'dead'",
]

#: The migrations in order; the schema's version is the number applied. Version 3: the schedule tables.
MIGRATIONS: Final = (_V1, _V2, SCHEDULE_TABLES)
#: The schema version this package reads and writes.
SCHEMA_VERSION: Final = len(MIGRATIONS)


def valid_schema(name: object) -> str:
    """``name`` if it is a usable schema name (lower case letters, digits, ``_``; at most 40 characters).

    Raises:
        ConfigurationError: anything else (it also names the NOTIFY channels, so it is kept short and plain).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"schema must be 1-40 lower case letters, digits or '_' (not starting with a digit), not {name!r}"
        )
    return name


def channels(schema: str) -> tuple[str, str]:
    """The NOTIFY channels of ``schema``: (wake-up, outcome stored)."""
    return f"{schema}_wake", f"{schema}_done"


def _render(statement: str, schema: str) -> sql.Composed:
    wake, done = channels(schema)
    return sql.SQL(statement).format(s=sql.Identifier(schema), wake=sql.Literal(wake), done=sql.Literal(done))


def _how(url_hint: str) -> str:
    return f"run `await backend.migrate()` or `python -m worker_postgres migrate {url_hint}`"


async def current_version(conn: AsyncConnection[Any], schema: str) -> int | None:
    """The applied version of ``schema``, ``None`` when it has no version table."""
    row = await (
        await conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{sql.Identifier(schema).as_string(conn)}.schema_version",)
        )
    ).fetchone()
    if row is None or not row[0]:
        return None
    query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(sql.Identifier(schema))
    got = await (await conn.execute(query)).fetchone()
    return int(got[0]) if got is not None else 0


async def migrate(conn: AsyncConnection[Any], schema: str) -> int:
    """Bring ``schema`` to :data:`SCHEMA_VERSION` in one transaction; returns the version (idempotent).

    Concurrent migrations are serialised by a transaction-scoped advisory lock on the schema's name.

    Raises:
        ConfigurationError: the schema is newer than this package knows.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"worker_postgres:{schema}",))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_version"
                " (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        version = await current_version(conn, schema) or 0
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"schema {schema!r} is at version {version}, newer than this worker-postgres ({SCHEMA_VERSION}):"
                " upgrade worker-postgres"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                await conn.execute(_render(statement, schema))
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_version (version) VALUES (%s)").format(sql.Identifier(schema)),
                (number,),
            )
    return SCHEMA_VERSION


async def check_schema(conn: AsyncConnection[Any], schema: str, url_hint: str) -> None:
    """Raise :class:`ConfigurationError` unless ``schema`` is at :data:`SCHEMA_VERSION` (never migrates).

    Raises:
        ConfigurationError: missing, older (with how to migrate) or newer (upgrade the package).
    """
    try:
        version = await current_version(conn, schema)
    except pgerrors.InsufficientPrivilege as exc:
        raise ConfigurationError(f"cannot read the worker schema {schema!r}: {exc}") from None
    if version is None or version == 0:
        raise ConfigurationError(f"the worker schema {schema!r} does not exist: {_how(url_hint)}")
    if version < SCHEMA_VERSION:
        raise ConfigurationError(
            f"the worker schema {schema!r} is at version {version}, this worker-postgres needs {SCHEMA_VERSION}:"
            f" {_how(url_hint)}"
        )
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the worker schema {schema!r} is at version {version}, newer than this worker-postgres"
            f" ({SCHEMA_VERSION}): upgrade worker-postgres"
        )
