"""Admin operations that move tasks between states: requeue, replay, delete, purge (each a Lua script)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from worker_core.errors import ConfigurationError

from worker_redis._errors import redis_errors
from worker_redis.keys import normalize_queue

from ._ops import _BATCH, _WAKE_CAP, MAX_IDS, AdminOps, _chunks, _s, clean_ids, now_ms
from ._records import MoveResult, PurgeResult

__all__ = ("AdminMoves",)


class AdminMoves(AdminOps):
    """Requeue, replay, delete and purge; see :class:`~worker_redis.admin.RedisAdmin`."""

    async def requeue(
        self, ids: Iterable[str], *, queue: str = "", delay: float = 0.0, reset_attempts: bool = False
    ) -> MoveResult:
        """Make tasks ready (from the DLQ, a ready or a processing set), ``delay`` seconds from now.

        ``queue`` moves them to another queue (the hash's ``queue`` is rewritten). Each task gets a fresh
        lease token, so a worker that still holds a lease on it cannot ack, nack or fail it. Ids
        without a task hash are reported in ``missing`` and nothing is created for them.
        """
        if delay < 0:
            raise ConfigurationError("delay must be >= 0")
        todo = clean_ids(ids)
        target = queue.strip()
        k = self.keys
        moved, missing = 0, list[str]()
        with redis_errors(self.where):
            for chunk in _chunks(todo):
                now = now_ms()
                ready_at = now + round(delay * 1000)
                args: list[str | int] = [
                    self._p,
                    now,
                    ready_at,
                    target,
                    self.default_queue,
                    int(reset_attempts),
                    self._seed(),
                ]
                raw = await self.scripts.requeue(keys=[k.dead, k.queues, k.wake], args=[*args, _WAKE_CAP, *chunk])
                moved += int(raw[0])
                missing.extend(_s(x) for x in raw[1])
        return MoveResult(moved, tuple(missing))

    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Replay up to ``limit`` dead tasks (0 = the whole DLQ as it is now), oldest first, to their queues."""
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        k = self.keys
        replayed = 0
        with redis_errors(self.where):
            remaining = limit or int(await self.client.llen(k.dead))
            while remaining > 0:
                n = min(remaining, _BATCH)
                args: list[str | int] = [
                    self._p,
                    now_ms(),
                    n,
                    self.default_queue,
                    int(reset_attempts),
                    self._seed(),
                    _WAKE_CAP,
                ]
                raw = await self.scripts.replay_dlq(keys=[k.dead, k.queues, k.wake], args=args)
                replayed += int(raw[0])
                remaining -= n
                if int(raw[1]) < n:
                    break
        return MoveResult(replayed)

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Replay these dead tasks (go-worker's AdminReplayDLQByID); at least one id, at most 1000."""
        todo = clean_ids(ids, max_ids=MAX_IDS)
        if not todo:
            raise ConfigurationError("at least one task id is required")
        return await self.requeue(todo, reset_attempts=reset_attempts)

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Remove tasks from their ready/processing set and the DLQ; with ``delete_hash`` drop their hashes.

        A kept hash gets a fresh lease token (a worker holding the task cannot ack it). Unlike go-worker,
        an id that exists nowhere is not counted and no stub hash is created.
        """
        todo = clean_ids(ids)
        k = self.keys
        deleted, missing = 0, list[str]()
        with redis_errors(self.where):
            for chunk in _chunks(todo):
                args: list[str | int] = [
                    self._p,
                    now_ms(),
                    queue.strip(),
                    self.default_queue,
                    int(delete_hash),
                    self._seed(),
                ]
                raw = await self.scripts.delete(keys=[k.dead], args=[*args, *chunk])
                deleted += int(raw[0])
                missing.extend(_s(x) for x in raw[1])
        return MoveResult(deleted, tuple(missing))

    async def purge(
        self,
        *,
        queues: Sequence[str] = (),
        ready: bool = False,
        processing: bool = False,
        dlq: bool = False,
        limit: int = 0,
        delete_hash: bool = False,
    ) -> PurgeResult:
        """Remove up to ``limit`` (0 = all) entries per queue and set, oldest scores first, in bounded batches.

        ``queues`` defaults to every known queue. The DLQ is purged from its head (newest first).
        Task hashes are kept (as in go-worker) unless ``delete_hash``.
        """
        if not (ready or processing or dlq):
            raise ConfigurationError("at least one of --ready, --processing, or --dlq is required")
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        names = list(queues) if queues else await self.queue_names()
        names = [normalize_queue(q, self.default_queue) for q in names]
        removed_ready: dict[str, int] = {}
        removed_processing: dict[str, int] = {}
        with redis_errors(self.where):
            for name in names:
                if ready:
                    removed_ready[name] = await self._purge_key("zset", self.keys.ready(name), limit, delete_hash)
                if processing:
                    key = self.keys.processing(name)
                    removed_processing[name] = await self._purge_key("zset", key, limit, delete_hash)
            removed_dead = await self._purge_key("list", self.keys.dead, limit, delete_hash) if dlq else None
        return PurgeResult(removed_ready, removed_processing, removed_dead)

    async def _purge_key(self, kind: str, key: str, limit: int, delete_hash: bool) -> int:
        total = int(await (self.client.zcard(key) if kind == "zset" else self.client.llen(key)))
        remaining = min(limit, total) if limit else total
        removed = 0
        while remaining > 0:
            n = min(remaining, _BATCH)
            got = int(await self.scripts.purge(keys=[key], args=[kind, n, self.keys.task_prefix, int(delete_hash)]))
            removed += got
            remaining -= n
            if got < n:
                break
        return removed
