"""One LISTEN connection per backend: wake-ups for ``wait_for_work`` and stored outcomes for ``wait_outcome``.

The connection is owned by one supervised asyncio task, started on first use and reconnecting with backoff
after a loss; every reconnect wakes every waiter (notifications sent while it was down are lost, so they
re-check). Waiters are bounded by their callers: each removes itself when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg import sql

__all__ = ("Listener",)

logger = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0


class Listener:
    """LISTEN on the wake-up and outcome channels of one schema through a dedicated connection."""

    def __init__(self, conninfo: str, wake: str, done: str, connect_kwargs: dict[str, Any]) -> None:
        self._conninfo = conninfo
        self._wake = wake
        self._done = done
        self._kwargs = connect_kwargs
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Incremented on every wake-up (and every reconnect); a waiter compares it with what it saw.
        self.generation = 0
        self._changed = asyncio.Event()
        self._outcome_waiters: dict[str, set[asyncio.Event]] = {}
        self._listening = asyncio.Event()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up right now."""
        return self._listening.is_set()

    def start(self) -> None:
        """Start the owning task (once per event loop); nothing happens after :meth:`aclose`."""
        loop = asyncio.get_running_loop()
        if self._closed or (self._task is not None and not self._task.done() and self._loop is loop):
            return
        if self._loop is not loop:  # events belong to the loop they were made on
            self._changed = asyncio.Event()
            self._listening = asyncio.Event()
            self._outcome_waiters = {}
        self._loop = loop
        self._task = loop.create_task(self._run(), name="worker-postgres-listen")

    async def ready(self, max_wait: float) -> bool:
        """Start if needed and wait up to ``max_wait`` seconds for LISTEN to be active; whether it is."""
        self.start()
        if self._listening.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                await self._listening.wait()
        return self._listening.is_set()

    async def wait_change(self, seen: int, max_wait: float) -> None:
        """Return when :attr:`generation` differs from ``seen``, or after ``max_wait`` seconds."""
        if self.generation != seen or max_wait <= 0:
            return
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max_wait):
                while self.generation == seen:
                    await event.wait()
                    event = self._changed

    def outcome_event(self, task_id: str) -> asyncio.Event:
        """An event set when the outcome of ``task_id`` is stored (or the connection came back)."""
        event = asyncio.Event()
        self._outcome_waiters.setdefault(task_id, set()).add(event)
        return event

    def forget(self, task_id: str, event: asyncio.Event) -> None:
        """Remove a waiter made by :meth:`outcome_event`."""
        waiters = self._outcome_waiters.get(task_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._outcome_waiters[task_id]

    def waiting(self) -> int:
        """Outcome waiters registered now."""
        return sum(len(w) for w in self._outcome_waiters.values())

    def _bump(self) -> None:
        self.generation += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _wake_all(self) -> None:
        self._bump()
        for waiters in self._outcome_waiters.values():
            for event in waiters:
                event.set()

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **self._kwargs)
                async with conn:
                    for channel in (self._wake, self._done):
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._listening.set()
                    self._wake_all()  # anything sent while it was down is lost: everyone re-checks
                    backoff = _BACKOFF_MIN_S
                    async for note in conn.notifies():
                        if note.channel == self._wake:
                            self._bump()
                        else:
                            for event in self._outcome_waiters.get(note.payload, ()):
                                event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost connection, server restart: reconnect with backoff
                logger.debug("worker-postgres LISTEN connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                if self._listening.is_set():
                    self._listening.clear()
                    self._wake_all()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def aclose(self) -> None:
        """Stop the task and close the connection; waiters are woken (they fall back to polling)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._listening.clear()
        self._wake_all()
        self._closed = False  # a later use (the pool reopens too) starts a new connection
