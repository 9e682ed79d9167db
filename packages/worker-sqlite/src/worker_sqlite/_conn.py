"""One SQLite connection per thread: every call runs in the connection's own thread, never on the event loop.

:class:`Writer` groups the write operations queued while one transaction runs into the next transaction
(group commit: one ``BEGIN IMMEDIATE ... COMMIT``, one fsync, for many concurrent callers), each operation
in its own savepoint, so one that raises is undone alone. :class:`Reader` runs reads. A caller cancelled
while its operation runs does not stop it: the transaction completes (or rolls back) in the thread and the
result is dropped; an operation still queued when its caller was cancelled is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar, final

from worker_core.errors import BackendError, BackendUnavailableError, ConfigurationError

__all__ = ("Op", "Reader", "Writer", "open_connection", "retry_while_busy", "translate")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
#: Called in the writer thread after a commit with the results of the committed group.
AfterCommit = Callable[[list[Any]], None]

# Primary result codes (https://sqlite.org/rescode.html).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
_UNAVAILABLE = {
    _BUSY: "the database stayed locked past the busy timeout",
    _LOCKED: "the database stayed locked past the busy timeout",
    _READONLY: "the database file is read-only",
    _IOERR: "disk I/O error",
    _FULL: "the disk (or the database's size limit) is full",
    _CANTOPEN: "the database file cannot be opened",
}


def translate(exc: sqlite3.Error, where: str) -> BackendError:
    """The worker-core error for a sqlite3 error: transient conditions are :class:`BackendUnavailableError`.

    Locked past the busy timeout, read-only, disk full and I/O errors change nothing (the transaction rolled
    back) and may clear, so the manager retries them; a corrupt file or anything else is a :class:`BackendError`.
    """
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    reason = _UNAVAILABLE.get(code)
    if reason is None and "locked" in str(exc):
        reason = _UNAVAILABLE[_BUSY]
    if reason is not None:
        return BackendUnavailableError(f"{where}: {reason} ({exc})")
    if code in (_CORRUPT, _NOTADB):
        return BackendError(f"{where}: the database file is corrupt or not SQLite ({exc})")
    return BackendError(f"{where}: {type(exc).__name__}: {exc}")


class Undecodable(bytes):
    """A TEXT value that is not UTF-8 (a corrupt row): kept as bytes so that reading the row never fails."""


def _text(data: bytes) -> str | Undecodable:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable(data)


def retry_while_busy(opener: Callable[[], T], busy_timeout: float) -> T:
    """``opener()``, tried again for up to ``busy_timeout`` seconds while it raises BackendUnavailableError.

    SQLite answers SQLITE_BUSY at once, without calling the busy handler, where waiting could deadlock: two
    processes that open a new file together (one switching it to WAL, the other creating the schema) can get
    it however long the busy timeout. Runs in a connection's own thread (it sleeps between tries).
    """
    deadline = time.monotonic() + max(busy_timeout, 1.0)
    while True:
        try:
            return opener()
        except BackendUnavailableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def open_connection(path: str, *, busy_timeout: float, synchronous: str, where: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, autocommit (transactions are explicit), with a busy timeout.

    Raises:
        ConfigurationError: the file cannot be opened or is not an SQLite database, or WAL is refused.
        BackendUnavailableError: the file stayed locked past the busy timeout.
    """
    try:
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"{where}: cannot open the database file: {exc}") from None
    try:
        db.text_factory = _text
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigurationError(f"{where}: the database refuses WAL mode (journal_mode={mode})")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = OFF")
    except sqlite3.Error as exc:
        db.close()
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code in (_NOTADB, _CORRUPT, _CANTOPEN):
            raise ConfigurationError(f"{where}: not a usable SQLite database: {exc}") from None
        raise translate(exc, where) from None
    except BaseException:
        db.close()
        raise
    return db


class _Thread:
    """A connection and the one thread that uses it."""

    def __init__(self, name: str, where: str) -> None:
        self.where = where
        self.db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the connection's thread; sqlite3 errors become worker-core errors."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self.db
        if db is None:
            raise BackendUnavailableError(f"{self.where}: the backend is closed")
        try:
            return fn(db)
        except sqlite3.Error as exc:
            raise translate(exc, self.where) from None

    async def open(self, opener: Callable[[], sqlite3.Connection]) -> None:
        def run() -> None:
            self.db = opener()

        await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def close(self) -> None:
        def run() -> None:
            db, self.db = self.db, None
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, run)
        finally:
            self._executor.shutdown(wait=False)


@final
class Reader(_Thread):
    """The read connection: queries that see the last committed state (WAL readers never block the writer)."""


@dataclass(slots=True)
class _Pending:
    op: Op
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


@final
class Writer(_Thread):
    """The write connection: operations queued meanwhile share one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, name: str, where: str, after_commit: AfterCommit | None = None, max_group: int = 256) -> None:
        super().__init__(name, where)
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._after_commit = after_commit
        self._max_group = max_group

    async def write(self, op: Op) -> Any:
        """Run ``op(connection)`` inside a write transaction (possibly shared with other operations).

        ``op`` returns its result or raises; an exception undoes only its own statements (a savepoint). A
        failing ``BEGIN`` or ``COMMIT`` (locked, disk full, read-only) fails every operation of the group with
        the translated error and nothing of the group is written.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._pending.append(_Pending(op, future, loop))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            try:
                self._executor.submit(self._drain)
            except RuntimeError:  # the executor is shut down: the backend was closed
                with self._lock:
                    self._pending.clear()
                    self._scheduled = False
                raise BackendUnavailableError(f"{self.where}: the backend is closed") from None
        return await future

    def _drain(self) -> None:
        with self._lock:
            group = self._pending[: self._max_group]
            del self._pending[: self._max_group]
            more = bool(self._pending)
            self._scheduled = more
        if more:
            self._executor.submit(self._drain)
        group = [p for p in group if not p.future.cancelled()]  # cancelled before it started: skipped
        if not group:
            return
        try:
            results = self._transaction(group)
        except BaseException as exc:
            error = exc
            results = [error] * len(group)
        else:
            if self._after_commit is not None:
                with contextlib.suppress(Exception):
                    self._after_commit(results)
        for pending, result in zip(group, results, strict=True):
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
                pending.loop.call_soon_threadsafe(_resolve, pending.future, result)

    def _transaction(self, group: list[_Pending]) -> list[Any]:
        db = self.db
        if db is None:
            raise BackendUnavailableError(f"{self.where}: the backend is closed")
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate(exc, self.where) from None
        results: list[Any] = []
        try:
            for pending in group:
                db.execute("SAVEPOINT op")
                try:
                    results.append(pending.op(db))
                except Exception as exc:
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back (disk full, I/O error): every operation of the
                        # group is undone, so every one fails with this error.
                        if isinstance(exc, sqlite3.Error):
                            raise translate(exc, self.where) from None
                        raise
                    db.execute("ROLLBACK TO op")
                    results.append(translate(exc, self.where) if isinstance(exc, sqlite3.Error) else exc)
                db.execute("RELEASE op")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            raise translate(exc, self.where) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            raise
        return results


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
