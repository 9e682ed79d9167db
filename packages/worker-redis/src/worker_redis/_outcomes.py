"""Outcome wake-ups: ONE pub/sub connection per backend, shared by every task waited for.

The ack and fail scripts publish a stored outcome on ``P:done:<id>`` (``SPUBLISH``; ``PUBLISH`` on a server
without sharded pub/sub). A waiter registers its task's channel here, and once the subscription is confirmed
it reads ``P:result:<id>`` (closing the race with a task that finished before the subscription), then waits
for the message. A supervised task owns the connection: a writer sends the (un)subscriptions the waiters
need and a ping when idle, a reader hands messages to the waiters. After a connection loss it reconnects
with a backoff, subscribes again, and every waiter reads the key again (a message may have been missed).
Nothing is kept for a task nobody waits for any more: its channel is unsubscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import BackendUnavailableError, PayloadError

__all__ = ("OutcomeWaiters",)

logger = logging.getLogger(__name__)

_IDLE_S: Final = 5.0  # a ping after this long without a command; no answer within twice this: reconnect
_BACKOFF_S: Final = (0.05, 2.0)  # first and longest pause between reconnection attempts


class _Reconnect(Exception):
    """The session must start over (the server dropped a subscription, or sharded pub/sub is missing)."""


class _Session:
    __slots__ = ("over",)

    def __init__(self) -> None:
        self.over = False


class _Channel:
    __slots__ = ("futures", "ready", "waiters")

    def __init__(self) -> None:
        self.waiters = 0  # wait() calls on this channel (an entry lives while there is one)
        # Each resolves with the outcome published, or None: "subscribed (again): read the key".
        self.futures: set[asyncio.Future[TaskOutcome | None]] = set()
        self.ready = asyncio.Event()  # the subscription is confirmed on the live connection


class OutcomeWaiters:
    """Waiters for stored outcomes, multiplexed on one pub/sub connection (see the module docstring).

    Args:
        open_connection: a new, unconnected redis-py connection to the server that holds the channels.
        read: the stored outcome of a task (``GET P:result:<id>``), or ``None``.
        channel: the channel name of a task.
        where: the server's name for errors.
        refresh: awaited before reconnecting after a failure (a cluster re-reads its slot map).
    """

    def __init__(
        self,
        open_connection: Callable[[], Any],
        read: Callable[[uuid.UUID], Awaitable[TaskOutcome | None]],
        channel: Callable[[uuid.UUID], bytes],
        where: str,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._open = open_connection
        self._read = read
        self._channel = channel
        self._where = where
        self._refresh = refresh
        self._channels: dict[bytes, _Channel] = {}
        self._server: set[bytes] | None = None  # channels the live session subscribed (None: no session)
        self._inflight: dict[bytes, int] = {}  # subscribe commands sent, not yet confirmed
        self._leaving: dict[bytes, int] = {}  # unsubscribe commands sent, not yet confirmed
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sharded = True
        self._closed = False
        self._generation = 0  # bumped by aclose: a waiter woken after it gives up
        self.reconnects = 0

    def __len__(self) -> int:
        """Channels subscribed or about to be (tasks waited for)."""
        return len(self._channels)

    async def wait(self, task_id: uuid.UUID, max_wait: float | None) -> TaskOutcome | None:
        """The outcome of ``task_id`` once stored; ``None`` after ``max_wait`` seconds (``None``: no limit).

        Raises:
            PayloadError: what is stored under the task's result key is not an outcome.
            BackendUnavailableError: the backend was closed while waiting, or the key could not be read.
        """
        if self._closed:
            raise BackendUnavailableError(f"{self._where}: the backend is closed")
        name = self._channel(task_id)
        entry = self._channels.get(name)
        if entry is None:
            entry = self._channels[name] = _Channel()
            self._kick.set()
            self._ensure_running()
        entry.waiters += 1
        generation = self._generation
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TaskOutcome | None] = loop.create_future()
        entry.futures.add(future)
        try:
            async with asyncio.timeout(max_wait):
                while True:
                    if entry.ready.is_set() and not future.done():
                        outcome = await self._read(task_id)  # subscribed first: a later store is not missed
                        if outcome is not None:
                            return outcome
                    got = await future
                    if got is not None:
                        return got
                    if generation != self._generation:
                        raise BackendUnavailableError(f"{self._where}: the backend is closed")
                    future = loop.create_future()  # (re)subscribed, or an unreadable message: read the key
                    entry.futures.add(future)
        except TimeoutError:
            return None
        finally:
            entry.waiters -= 1
            entry.futures.discard(future)
            if not future.done():
                future.cancel()
            if not entry.waiters and self._channels.get(name) is entry:
                if self._server is None:
                    del self._channels[name]  # no session: nothing subscribed on the server
                else:
                    self._kick.set()  # the writer unsubscribes it

    async def aclose(self) -> None:
        """Stop the connection's task and fail every waiter with BackendUnavailableError."""
        self._closed = True
        self._generation += 1
        self._kick.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closed = BackendUnavailableError(f"{self._where}: the backend is closed")
        for entry in self._channels.values():
            for future in entry.futures:
                if not future.done():
                    future.set_exception(closed)
        self._channels.clear()
        self._closed = False  # a backend connected again may wait again

    # -- the connection's task --------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name="worker-redis-outcomes")

    async def _supervise(self) -> None:
        pause = _BACKOFF_S[0]
        failed = False
        while not self._closed:
            conn = self._open()
            answered: list[bool] = []
            try:
                if failed and self._refresh is not None:
                    await self._refresh()
                await conn.connect()
                self._server = set()
                self._inflight.clear()
                self._leaving.clear()
                self._kick.set()
                session = _Session()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._reader(conn, answered, session))
                    group.create_task(self._writer(conn, session))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failure of the session, never the waiters'
                cause = _first(exc)
                if isinstance(cause, _Reconnect):
                    logger.info("outcome wake-ups on %s start over: %s", self._where, cause)
                else:
                    logger.warning(
                        "outcome wake-ups on %s lost their connection (%r); reconnecting", self._where, cause
                    )
                failed = True
            finally:
                self._lost()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            if self._stopping():
                return
            self.reconnects += 1
            if answered:
                pause = _BACKOFF_S[0]
            await asyncio.sleep(pause)
            pause = min(pause * 2, _BACKOFF_S[1])

    def _stopping(self) -> bool:
        return self._closed  # (read anew after each await)

    def _lost(self) -> None:
        self._server = None
        for name, entry in list(self._channels.items()):
            entry.ready.clear()
            if not entry.waiters:
                del self._channels[name]

    async def _writer(self, conn: Any, session: _Session) -> None:
        server = self._server
        assert server is not None
        while not (session.over or self._closed):  # (a flag too: never left to cancellation alone)
            self._kick.clear()
            for name, entry in list(self._channels.items()):
                if not entry.waiters:
                    del self._channels[name]  # nobody waits any more: unsubscribed below if it was subscribed
            want = set(self._channels)
            add = sorted(want - server)
            drop = sorted(server - want)
            if add:
                for name in add:
                    self._inflight[name] = self._inflight.get(name, 0) + 1
                server.update(add)
                await conn.send_command("SSUBSCRIBE" if self._sharded else "SUBSCRIBE", *add, check_health=False)
            if drop:
                for name in drop:
                    self._leaving[name] = self._leaving.get(name, 0) + 1
                server.difference_update(drop)
                await conn.send_command("SUNSUBSCRIBE" if self._sharded else "UNSUBSCRIBE", *drop, check_health=False)
            if add or drop:
                continue
            try:
                async with asyncio.timeout(_IDLE_S):
                    await self._kick.wait()
            except TimeoutError:
                await conn.send_command("PING", check_health=False)

    async def _reader(self, conn: Any, answered: list[bool], session: _Session) -> None:
        try:
            await self._read_loop(conn, answered)
        finally:
            session.over = True
            self._kick.set()

    async def _read_loop(self, conn: Any, answered: list[bool]) -> None:
        while not self._closed:
            try:
                response = await conn.read_response(timeout=2 * _IDLE_S, disconnect_on_error=False, push_request=True)
            except Exception as exc:
                if self._sharded and "unknown command" in str(exc).lower():
                    self._sharded = False  # a server without sharded pub/sub: the scripts PUBLISH instead
                    raise _Reconnect("the server has no sharded pub/sub; using SUBSCRIBE") from None
                raise
            if response is None:
                raise ConnectionError(f"{self._where}: no answer on the pub/sub connection for {2 * _IDLE_S:.0f}s")
            if not answered:
                answered.append(True)
            if not isinstance(response, list) or len(response) < 3:
                continue  # a pong
            kind, name, data = bytes(response[0]).lower(), response[1], response[2]
            if kind in (b"smessage", b"message"):
                self._message(name, data)
            elif kind in (b"ssubscribe", b"subscribe"):
                self._confirmed(name)
            elif kind in (b"sunsubscribe", b"unsubscribe"):
                left = self._leaving.get(name, 0)
                if left <= 0:  # not asked: the slot moved, or the server dropped it
                    raise _Reconnect(f"the server ended the subscription to {name!r}")
                if left == 1:
                    del self._leaving[name]
                else:
                    self._leaving[name] = left - 1

    def _confirmed(self, name: bytes) -> None:
        left = self._inflight.get(name, 0) - 1
        if left > 0:
            self._inflight[name] = left
            return
        self._inflight.pop(name, None)
        entry = self._channels.get(name)
        if entry is not None and not entry.ready.is_set():
            entry.ready.set()
            _resolve(entry, None)

    def _message(self, name: bytes, data: bytes) -> None:
        entry = self._channels.get(name)
        if entry is None:
            return
        try:
            outcome: TaskOutcome | None = TaskOutcome.decode(data)
        except PayloadError:
            outcome = None  # the waiters read the key themselves, and report what they find
        if outcome is not None and self._channel(outcome.id) != name:
            outcome = None
        _resolve(entry, outcome)


def _resolve(entry: _Channel, value: TaskOutcome | None) -> None:
    for future in entry.futures:
        if not future.done():
            future.set_result(value)
    entry.futures.clear()


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
