"""Pausing: the global flag (``control.paused``) and each queue's (``queues.paused``), for backend and admin.

A pause takes effect at the next claim of every node; lifting one NOTIFYs the wake-up channel so idle workers
claim at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from psycopg import sql
from worker_core.admin import PauseState
from worker_core.errors import ConfigurationError

from ._pool import Pool
from ._rows import normalize_queue
from ._sql import Statements

__all__ = ("QueueControl",)

_PAUSE_KNOWN: Final = "UPDATE {s}.queues SET paused = %(paused)s WHERE name = %(name)s RETURNING 1"
_STATE: Final = (
    "SELECT (SELECT paused FROM {s}.control WHERE id = 1),"
    " coalesce(array(SELECT name FROM {s}.queues WHERE paused ORDER BY name), '{{}}')"
)


@final
class QueueControl:
    """Sets and reads the pause flags of one schema.

    Args:
        pool: the backend's pool.
        statements: the backend's statements.
        schema: the schema's name.
        wake_channel: the channel idle workers LISTEN on.
        default_queue: the queue an empty queue name means in :meth:`set_paused`.
    """

    def __init__(
        self, pool: Pool, statements: Statements, schema: str, wake_channel: str, default_queue: Callable[[], str]
    ) -> None:
        self._pool = pool
        self._sql = statements
        self._wake_channel = wake_channel
        self._default_queue = default_queue
        s = sql.Identifier(schema)
        self._pause_known = sql.SQL(_PAUSE_KNOWN).format(s=s)
        self._state = sql.SQL(_STATE).format(s=s)

    async def set_paused(self, queue: str | None, paused: bool) -> None:
        """Set the global pause (``queue`` is ``None``) or one queue's (registered if unknown)."""
        await self._pool.check()
        async with self._pool.connection() as conn, conn.transaction():
            if queue is None:
                await conn.execute(self._sql.pause_all, {"paused": paused})
            else:
                name = normalize_queue(queue, self._default_queue())
                await conn.execute(self._sql.pause_queue, {"queue": name, "paused": paused})
            if not paused:
                await conn.execute(self._sql.wake, {"channel": self._wake_channel})

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue the schema knows (a normalised name).

        Raises:
            ConfigurationError: an unknown queue (nothing changed).
        """
        await self._pool.check()
        async with self._pool.connection() as conn:
            known = await (await conn.execute(self._pause_known, {"paused": paused, "name": queue})).fetchall()
        if not known:
            raise ConfigurationError(f"unknown queue {queue!r}")
        if not paused:
            await self.wake()

    async def wake(self) -> None:
        """NOTIFY the wake-up channel: idle workers of every node claim at once."""
        await self._pool.check()
        async with self._pool.connection() as conn:
            await conn.execute(self._sql.wake, {"channel": self._wake_channel})

    async def state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""
        await self._pool.check()
        async with self._pool.connection() as conn:
            [(paused, names)] = await (await conn.execute(self._state)).fetchall()
        return PauseState(paused=bool(paused), paused_queues=tuple(names))
