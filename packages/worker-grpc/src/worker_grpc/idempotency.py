"""The idempotency cache of the registration RPCs: bounded in size and time, successes only.

go-worker keeps every key forever and caches errors forever. Here an entry lives
for ``ttl`` seconds after its task was registered, the cache holds at most ``max_entries`` keys (the
least recently used completed entry goes first), and a registration that fails leaves nothing behind:
the same request can simply be sent again (a full queue or a stopped manager is transient).

Keys are scoped: the servicer passes the calling principal's name as ``scope``, so one principal's key
never finds (nor conflicts with) another principal's task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import final

from .errors import IdempotencyConflictError

__all__ = ("IdempotencyCache", "IdempotencyClaim")


_Slot = tuple[str, str]  # (scope, key)


@dataclass(slots=True)
class _Entry:
    signature: bytes
    task_id: uuid.UUID | None = None
    expires_at: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@final
class IdempotencyClaim:
    """The right to register the task of one key; :meth:`commit` its id, or :meth:`release` on failure.

    ``task_id`` is set instead when the key was already used for the same task: register nothing.
    """

    __slots__ = ("_cache", "_entry", "_slot", "key", "task_id")

    def __init__(self, cache: IdempotencyCache, slot: _Slot, entry: _Entry | None, task_id: uuid.UUID | None) -> None:
        self._cache = cache
        self._entry = entry
        self._slot = slot
        self.key = slot[1]
        self.task_id = task_id

    def commit(self, task_id: uuid.UUID) -> None:
        """The task was registered under ``task_id``: remember it for the cache's ``ttl``."""
        if self._entry is not None:
            self._cache._commit(self._slot, self._entry, task_id)
            self._entry = None

    def release(self) -> None:
        """The registration failed: forget the key (waiting requests with the same key try again)."""
        if self._entry is not None:
            self._cache._release(self._slot, self._entry)
            self._entry = None


@final
class IdempotencyCache:
    """Maps an idempotency key to the id of the task first registered with it.

    A key is bound to the SHA-256 of the whole task message (the signature): the same key with another
    task raises :class:`~worker_grpc.errors.IdempotencyConflictError` (``ALREADY_EXISTS``). Concurrent
    requests with the same key and task wait for the first one to finish.

    Args:
        max_entries: Most keys kept; the least recently used completed ones are evicted beyond it.
        ttl: Seconds a completed key is remembered.
        clock: Monotonic time source in seconds (tests inject a fake one).
    """

    def __init__(
        self, max_entries: int = 10_000, ttl: float = 3600.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[_Slot, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: str, signature: bytes, *, scope: str = "") -> uuid.UUID | None:
        """The id already stored for ``key`` in ``scope`` (``None`` when unknown or pending); raises on a conflict."""
        entry = self._live((scope, key))
        if entry is None:
            return None
        if entry.signature != signature:
            raise IdempotencyConflictError(f"idempotency key {key!r} already used for a different task")
        return entry.task_id

    async def claim(self, key: str, signature: bytes, *, scope: str = "") -> IdempotencyClaim:
        """Reserve ``key`` (in ``scope``) for this task, or return the id it already maps to (``claim.task_id``)."""
        slot = (scope, key)
        while True:
            entry = self._live(slot)
            if entry is None:
                entry = _Entry(signature)
                self._entries[slot] = entry
                return IdempotencyClaim(self, slot, entry, None)
            if entry.signature != signature:
                raise IdempotencyConflictError(f"idempotency key {key!r} already used for a different task")
            if entry.task_id is not None:
                self._entries.move_to_end(slot)
                return IdempotencyClaim(self, slot, None, entry.task_id)
            await entry.done.wait()  # another request registers this task right now

    def forget(self, key: str, *, scope: str = "") -> None:
        """Drop ``key`` (its task is gone from the manager, so the next request registers it anew)."""
        slot = (scope, key)
        entry = self._entries.get(slot)
        if entry is not None and entry.task_id is not None:
            del self._entries[slot]

    def _live(self, slot: _Slot) -> _Entry | None:
        entry = self._entries.get(slot)
        if entry is not None and entry.task_id is not None and entry.expires_at <= self._clock():
            del self._entries[slot]
            return None
        return entry

    def _commit(self, key: _Slot, entry: _Entry, task_id: uuid.UUID) -> None:
        entry.task_id = task_id
        entry.expires_at = self._clock() + self.ttl
        entry.done.set()
        if self._entries.get(key) is entry:
            self._entries.move_to_end(key)
        self._evict()

    def _release(self, key: _Slot, entry: _Entry) -> None:
        if self._entries.get(key) is entry:
            del self._entries[key]
        entry.done.set()

    def _evict(self) -> None:
        excess = len(self._entries) - self.max_entries
        if excess <= 0:
            return
        # Least recently used first (expired entries are older still); a pending entry is never evicted:
        # its request is still running.
        victims: list[_Slot] = []
        for key, entry in self._entries.items():
            if entry.task_id is not None:
                victims.append(key)
                if len(victims) == excess:
                    break
        for key in victims:
            del self._entries[key]
