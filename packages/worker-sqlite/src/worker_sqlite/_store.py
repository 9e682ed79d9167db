"""The backend's hold on its file: a writer and a reader connection, each in its own thread, and the waiters.

Both connections open on first use (the writer's open creates or migrates the schema) and close together.
While open, the backend's :class:`~worker_sqlite._wake.Waiters` belong to the file's in-process hub; after each
commit the writer thread tells the hub whom the committed operations concern (:class:`~worker_sqlite._ops.Wake`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, final

from worker_core.errors import ConfigurationError

from ._conn import Op, Reader, Writer, open_connection, retry_while_busy
from ._ops import Wake
from ._schema import open_migrated
from ._wake import ExistingOutcomes, Waiters, hub_for

__all__ = ("Store",)


@final
class Store:
    """The connections of one backend object to one SQLite file.

    Args:
        path: the absolute path of the file.
        name: the prefix of the connection threads' names.
        where: how errors name the file.
        busy_timeout: seconds a statement waits for another connection's lock.
        synchronous: the ``PRAGMA synchronous`` level.
        interval: seconds between the cross-process watcher's ``PRAGMA data_version`` reads.
        existing: which of some task ids have an outcome stored (the watcher's look-up).
        create: create the file (with its schema) when it is missing; else opening it is a ConfigurationError.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str,
        where: str,
        busy_timeout: float,
        synchronous: str,
        interval: float,
        existing: ExistingOutcomes,
        create: bool = True,
    ) -> None:
        self._path = path
        self._create = create
        self._name = name
        self._where = where
        self._busy = busy_timeout
        self._sync = synchronous
        self._interval = interval
        self._existing = existing
        self._hub = hub_for(path)
        self._waiters = self._new_waiters()
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._open_lock: asyncio.Lock | None = None

    @property
    def is_open(self) -> bool:
        """Whether the file is open."""
        return self._writer is not None

    @property
    def waiters(self) -> Waiters:
        """The current waiters (replaced by :meth:`close`, so that a reopened store starts afresh)."""
        return self._waiters

    @property
    def writer(self) -> Writer | None:
        """The write connection's thread while open."""
        return self._writer

    async def open(self) -> None:
        """Open both connections (creating or migrating the schema); concurrent callers share one open."""
        if self._writer is not None:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self.is_open:  # another caller opened it while this one waited for the lock
                return
            writer = Writer(f"{self._name}-w", self._where, self._after_commit)
            reader = Reader(f"{self._name}-r", self._where)
            path, busy, sync, where, create = self._path, self._busy, self._sync, self._where, self._create

            def open_writer() -> Any:  # in the writer's thread
                if not create and not os.path.exists(path):
                    raise ConfigurationError(
                        f"{where}: no such database file (workers and producers create it; check the path)"
                    )
                return retry_while_busy(
                    lambda: open_migrated(path, busy_timeout=busy, synchronous=sync, where=where), busy
                )

            try:
                await writer.open(open_writer)
                await reader.open(
                    lambda: retry_while_busy(
                        lambda: open_connection(path, busy_timeout=busy, synchronous=sync, where=where), busy
                    )
                )
            except BaseException:
                await writer.close()
                await reader.close()
                raise
            self._hub.join(self._waiters)
            self._reader, self._writer = reader, writer

    async def close(self) -> None:
        """Wake every waiter, leave the hub, close both connections and their threads. Idempotent."""
        if self._writer is None:
            return
        await self._waiters.aclose()
        self._hub.leave(self._waiters)
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        self._waiters = self._new_waiters()
        await writer.close()
        if reader is not None:
            await reader.close()

    async def write(self, op: Op) -> Any:
        """Run ``op`` in the next write transaction (opening the file first if needed); its result."""
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        return await self._writer.write(op)

    async def read(self, op: Op) -> Any:
        """Run ``op`` on the read connection (opening the file first if needed); its result."""
        if self._reader is None:
            await self.open()
        assert self._reader is not None
        return await self._reader.call(op)

    async def data_version(self) -> int:
        """``PRAGMA data_version`` of the read connection: it changes when another connection commits."""
        row = await self.read(lambda db: db.execute("PRAGMA data_version").fetchone())
        return int(row[0])

    def _new_waiters(self) -> Waiters:
        return Waiters(self.data_version, self._existing, self._interval)

    def _after_commit(self, results: list[Any]) -> None:
        """In the writer thread after each commit: wake whoever the committed operations concern."""
        work = False
        ids: list[str] = []
        for result in results:
            if isinstance(result, Wake):
                work = work or result.work
                ids.extend(result.outcomes)
        self._hub.notify(work, ids)
