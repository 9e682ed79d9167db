"""The backend's connection pool: opened lazily, errors translated, the schema version checked once.

A connection the server cut (a restart, a failover) raises ``BackendUnavailableError`` once; the pool then
checks every idle connection, so the next call gets a fresh one instead of failing once per broken connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from worker_core.errors import BackendUnavailableError

from . import _schema
from ._connect import migrate_url, pg_errors

__all__ = ("Pool",)

_ERRORS = (psycopg.Error, OSError, TimeoutError)


class Pool:
    """A psycopg ``AsyncConnectionPool`` of autocommit connections to one schema's database."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        where: str,
        *,
        size: tuple[int, int],
        timeout: float,
        kwargs: dict[str, Any],
        command_timeout: float | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.where = where
        self.kwargs = kwargs
        self._size = size
        self._timeout = timeout
        self._command_timeout = command_timeout
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock: asyncio.Lock | None = None
        self.checked = False

    async def _open(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            low, high = self._size
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                self.conninfo,
                min_size=low,
                max_size=high,
                kwargs={"autocommit": True, **self.kwargs},
                open=False,
                timeout=self._timeout,
            )
            with pg_errors(self.where):
                await pool.open(wait=False)
            self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self, *, bounded: bool = True) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; psycopg errors become worker errors, a lost server purges the broken ones.

        ``bounded``: the whole block (getting the connection included) is cut off after ``command_timeout`` with
        ``BackendUnavailableError``: a server that does not answer (frozen, a network dropping packets) would
        otherwise hold the caller forever, as libpq has no timeout of its own for a query.
        """
        pool = await self._open()
        limit = self._command_timeout if bounded else None
        try:
            async with asyncio.timeout(limit) as scope, pool.connection() as conn:
                yield conn
        except TimeoutError as exc:
            if limit is not None and scope.expired():
                raise BackendUnavailableError(f"{self.where} did not answer within command_timeout={limit:g}s") from exc
            with pg_errors(self.where):
                raise
        except _ERRORS as exc:
            if isinstance(exc, psycopg.OperationalError | OSError):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._timeout):
                        await pool.check()  # drop every connection the restart broke, not one per failed call
            with pg_errors(self.where):
                raise

    async def check(self) -> None:
        """Check the schema version once (never migrates); ConfigurationError says how to migrate."""
        if self.checked:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.is_checked():  # another caller checked while this one waited for the lock
                return
            # A connection of its own, not the pool's: a refused login or a missing database is reported as
            # itself (ConfigurationError) at once, instead of as a pool timeout.
            with pg_errors(self.where):
                try:
                    async with asyncio.timeout(self._command_timeout):
                        async with await psycopg.AsyncConnection.connect(
                            self.conninfo, autocommit=True, **self.kwargs
                        ) as conn:
                            await _schema.check_schema(conn, self.schema, migrate_url(self.conninfo, self.schema))
                except TimeoutError as exc:
                    raise BackendUnavailableError(
                        f"{self.where} did not answer within command_timeout={self._command_timeout:g}s"
                    ) from exc
            self.checked = True

    def is_checked(self) -> bool:
        """Whether the schema check passed."""
        return self.checked

    async def migrate(self) -> int:
        """Create or upgrade the schema (idempotent, serialised by an advisory lock); its version."""
        async with self.connection(bounded=False) as conn:  # may wait for another migration's lock
            version = await _schema.migrate(conn, self.schema)
        self.checked = True
        return version

    async def aclose(self) -> None:
        """Close the pool (a later call opens a new one)."""
        pool, self._pool = self._pool, None
        self.checked = False
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()
