"""Enqueue: one row with a VALUES insert, a batch with one ``unnest`` insert; on the pool or the caller's connection.

A queue is registered (``queues`` table, what the claim reads) by the first insert a backend makes into it; on a
caller's connection every time, since the caller's transaction may roll the registration back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from worker_core.durable.types import DurableTask
from worker_core.errors import ConfigurationError, DurableTaskExistsError, InvalidTaskError

from ._connect import pg_errors
from ._pool import Pool
from ._rows import enqueue_params, enqueue_row
from ._sql import Statements

__all__ = ("Enqueuer",)

_KNOWN_QUEUES = 1000  # queue names an enqueuer remembers as registered


class Enqueuer:
    """The enqueue statements of one backend, and the queues it registered."""

    def __init__(self, pool: Pool, statements: Statements) -> None:
        self._pool = pool
        self._sql = statements
        self._known: set[str] = set()

    async def one(self, task: DurableTask, default_queue: str, connection: psycopg.AsyncConnection[Any] | None) -> None:
        """Store ``task`` (see :meth:`PostgresDurableBackend.enqueue`)."""
        row, task_id = enqueue_row(task, default_queue)
        known = connection is None and row["queue"] in self._known
        statement = self._sql.enqueue_one if known else self._sql.enqueue_one_new_queue
        if not await self._insert(statement, row, connection):
            raise DurableTaskExistsError(
                f"durable task {task_id} already exists (same id, or a live task with its idempotency key)",
                ids=[task_id],
            )
        if connection is None:
            if len(self._known) >= _KNOWN_QUEUES:
                self._known.clear()  # bounded: a backend writing to very many queues registers them again
            self._known.add(row["queue"])

    async def many(
        self, tasks: Sequence[DurableTask], default_queue: str, connection: psycopg.AsyncConnection[Any] | None
    ) -> None:
        """Store ``tasks`` in one statement (see :meth:`PostgresDurableBackend.enqueue_many`)."""
        if not tasks:
            return
        params, ids = enqueue_params(tasks, default_queue)
        stored = await self._insert(self._sql.enqueue, params, connection)
        skipped: list[uuid.UUID] = []
        for task_id in ids:  # a later copy of a stored id was skipped by the insert
            if task_id in stored:
                stored.discard(task_id)
            else:
                skipped.append(task_id)
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
            raise DurableTaskExistsError(f"{len(skipped)} durable task(s) already exist: {shown}", ids=skipped)

    async def _insert(
        self, statement: Any, params: dict[str, Any], connection: psycopg.AsyncConnection[Any] | None
    ) -> set[uuid.UUID]:
        if connection is not None:
            if not isinstance(connection, psycopg.AsyncConnection):
                raise ConfigurationError("connection must be a psycopg AsyncConnection")
            try:
                rows = await (await connection.execute(statement, params)).fetchall()
            except psycopg.DataError as exc:
                raise InvalidTaskError(f"durable task rejected by PostgreSQL: {exc}") from None
            except (psycopg.Error, OSError) as exc:
                with pg_errors(self._pool.where):
                    raise exc from None
            return {row[0] for row in rows}
        await self._pool.check()
        async with self._pool.connection() as conn:
            try:
                rows = await (await conn.execute(statement, params)).fetchall()
            except psycopg.DataError as exc:
                raise InvalidTaskError(f"durable task rejected by PostgreSQL: {exc}") from None
        return {row[0] for row in rows}
