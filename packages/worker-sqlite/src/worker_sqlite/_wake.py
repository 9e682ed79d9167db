"""Waking idle workers and result waiters: in milliseconds within a process, by ``PRAGMA data_version`` across.

Within one process every backend object on the same file shares a :class:`Hub`: the writer thread calls
:meth:`Hub.notify` after each commit that made work ready or stored outcomes, and every waiter of every
backend on that file wakes at once (``call_soon_threadsafe``), whatever its event loop.

Across processes nothing is pushed: while something waits, each backend runs one watcher task that reads
``PRAGMA data_version`` on its read connection every ``interval`` seconds (25 ms by default). The value
changes when another connection committed; then the watcher wakes the work waiters and looks up, in one
query, which of the awaited outcomes now exist. Nothing runs while nobody waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import final

__all__ = ("Hub", "Waiters", "hub_for")

logger = logging.getLogger("worker_sqlite")

_HUBS: weakref.WeakValueDictionary[str, Hub] = weakref.WeakValueDictionary()
_HUBS_LOCK = threading.Lock()


@final
class Hub:
    """The in-process notifications of one database file."""

    __slots__ = ("__weakref__", "_lock", "_members")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: weakref.WeakSet[Waiters] = weakref.WeakSet()

    def join(self, waiters: Waiters) -> None:
        """Deliver this file's notifications to ``waiters`` from now on."""
        with self._lock:
            self._members.add(waiters)

    def leave(self, waiters: Waiters) -> None:
        """Stop delivering to ``waiters``."""
        with self._lock:
            self._members.discard(waiters)

    def notify(self, work: bool, outcome_ids: Iterable[str] = ()) -> None:
        """Wake work waiters (``work``) and the waiters of ``outcome_ids``, in every backend on the file."""
        ids = frozenset(outcome_ids)
        if not work and not ids:
            return
        with self._lock:
            members = list(self._members)
        for member in members:
            member.notify_threadsafe(work, ids)


def hub_for(path: str) -> Hub:
    """The hub of the file at ``path`` (an absolute path), shared by the whole process."""
    with _HUBS_LOCK:
        hub = _HUBS.get(path)
        if hub is None:
            hub = _HUBS[path] = Hub()
        return hub


DataVersion = Callable[[], Awaitable[int]]
ExistingOutcomes = Callable[[list[str]], Awaitable[set[str]]]


@final
class Waiters:
    """One backend's waiters and its cross-process watcher (a task that runs only while someone waits)."""

    def __init__(self, data_version: DataVersion, existing: ExistingOutcomes, interval: float) -> None:
        self._data_version = data_version
        self._existing = existing
        self._interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._work: set[asyncio.Future[None]] = set()
        self._outcomes: dict[str, set[asyncio.Future[None]]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._armed: asyncio.Future[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._work) + sum(len(f) for f in self._outcomes.values())

    # -- registration (on the backend's loop) --------------------------------------------------------

    def work_waiter(self) -> asyncio.Future[None]:
        """A future set when work may have become ready; :meth:`discard` it when done."""
        future = self._new_future()
        self._work.add(future)
        return future

    def outcome_waiter(self, task_id: str) -> asyncio.Future[None]:
        """A future set when the outcome of ``task_id`` may have been stored; :meth:`discard` it when done."""
        future = self._new_future()
        self._outcomes.setdefault(task_id, set()).add(future)
        return future

    def discard(self, future: asyncio.Future[None], task_id: str | None = None) -> None:
        """Forget ``future`` (registered for ``task_id``, or as a work waiter)."""
        if task_id is None:
            self._work.discard(future)
            return
        waiting = self._outcomes.get(task_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._outcomes[task_id]

    async def arm(self) -> None:
        """Make sure the watcher has read its baseline, so a commit after this call is noticed."""
        if self._closed:
            return
        if self._watcher is None or self._watcher.done():
            loop = asyncio.get_running_loop()
            self._armed = loop.create_future()
            self._watcher = loop.create_task(self._watch(self._armed), name="worker-sqlite watcher")
        armed = self._armed
        if armed is not None and not armed.done():
            await asyncio.shield(armed)

    def _new_future(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        return loop.create_future()

    # -- notifications ------------------------------------------------------------------------------

    def notify_threadsafe(self, work: bool, ids: frozenset[str]) -> None:
        """Called from any thread (the writer's, after a commit)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake, work, ids)

    def _wake(self, work: bool, ids: Iterable[str]) -> None:
        if work:
            for future in self._work:
                if not future.done():
                    future.set_result(None)
        for task_id in ids:
            for future in self._outcomes.get(task_id, ()):
                if not future.done():
                    future.set_result(None)

    def wake_all(self) -> None:
        """Wake every waiter (the watcher failed, or the backend closes): each checks the store itself."""
        self._wake(True, list(self._outcomes))

    async def _watch(self, armed: asyncio.Future[None]) -> None:
        try:
            version = await self._data_version()
        except Exception as exc:
            if not armed.done():
                armed.set_result(None)
            logger.warning("worker-sqlite watcher cannot read data_version (%s)", exc)
            self.wake_all()
            return
        if not armed.done():
            armed.set_result(None)
        try:
            while len(self) and not self._closed:
                await asyncio.sleep(self._interval)
                current = await self._data_version()
                if current == version:
                    continue
                version = current
                self._wake(True, ())
                waited = list(self._outcomes)
                if waited:
                    self._wake(False, await self._existing(waited))
        except (Exception, sqlite3.Error) as exc:
            logger.warning("worker-sqlite watcher stopped (%s); waiters check the store themselves", exc)
            self.wake_all()

    async def aclose(self) -> None:
        """Stop the watcher and wake every waiter."""
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        self.wake_all()
