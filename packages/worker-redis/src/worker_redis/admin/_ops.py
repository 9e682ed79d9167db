"""The state-changing admin operations and the bounded readers ``RedisAdmin`` builds on.

Every state change is one Lua script (``lua/admin_*.lua``) or a loop of bounded script calls; reads
are bounded pages. Nothing uses ``KEYS`` and nothing reads a whole set or list in one reply.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Self

from worker_core.admin import SOURCES as CORE_SOURCES
from worker_core.errors import ConfigurationError, TaskNotFoundError

from worker_redis._connect import parse_url
from worker_redis._errors import redis_errors
from worker_redis.backend import WAKE_CAP
from worker_redis.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, Keys, normalize_queue

from ._records import (
    NodeInfo,
    Overview,
    PauseState,
    QueueInfo,
    TaskRecord,
    TaskState,
    node_from_fields,
    record_from_fields,
)
from ._scripts import AdminScripts

__all__ = ("DEAD_COUNT_LIMIT", "MAX_IDS", "SOURCES", "AdminOps", "clean_ids", "now_ms")

#: Task ids one call accepts (go-worker's replay-by-id limit).
MAX_IDS = 1000
#: Sources of ``retry``, ``requeue`` and ``delete`` when no ids are given.
SOURCES = CORE_SOURCES
# Ids per script call: keeps each script short, so Redis never blocks for long.
_BATCH = 200
# Queues one overview may list; a bigger queue set is refused rather than read whole.
_MAX_QUEUES = 10_000
_MAX_NODES = 1000  # nodes one `workers` listing reads at most
# Dead ids read to count the DLQ per queue; beyond that the per-queue dead count is unknown.
DEAD_COUNT_LIMIT = 10_000
# Wake-up tokens kept in P:wake: the backend's cap (an admin move may make work ready for idle workers).
_WAKE_CAP = WAKE_CAP
_PAGE = 500


def now_ms() -> int:
    """Epoch milliseconds on this machine (go-worker computes every timestamp on the client too)."""
    return time.time_ns() // 1_000_000


def clean_ids(ids: Iterable[str], *, max_ids: int | None = None) -> list[str]:
    """Trim, split on commas, de-duplicate (order kept); more than ``max_ids`` is a ConfigurationError.

    Operators' explicit id lists are bounded by :data:`MAX_IDS` (go-worker's replay-by-id limit); ids
    read from a source (``retry --source dlq --limit 0``) are not, they are processed in batches.
    """
    out: dict[str, None] = {}
    for value in ids:
        for part in value.split(","):
            if part.strip():
                out[part.strip()] = None
    if max_ids is not None and len(out) > max_ids:
        raise ConfigurationError(f"too many task ids: {len(out)} (at most {max_ids})")
    return list(out)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _chunks(items: Sequence[str], size: int = _BATCH) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class AdminOps:
    """Admin operations over go-worker's Redis key layout (the README's "Key layout"); see :class:`RedisAdmin`.

    Args:
        client: a ``redis.asyncio.Redis`` created with ``decode_responses=False`` (payloads are bytes).
        prefix: the deployment's key prefix (``go-worker`` -> ``{go-worker}:...``).
        default_queue: the queue of tasks whose hash names none.
        where: how errors name the server (``redis at host:port``); never includes a password.

    Every method raises :class:`~worker_core.errors.BackendUnavailableError` when Redis cannot be
    reached, :class:`~worker_core.errors.ConfigurationError` for bad arguments or credentials, and
    :class:`~worker_core.errors.BackendError` for any other Redis failure.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        default_queue: str = DEFAULT_QUEUE,
        where: str = "redis",
    ) -> None:
        self.client = client
        self.keys = Keys.for_prefix(prefix)
        self.default_queue = normalize_queue(default_queue)
        self.where = where
        self.scripts = AdminScripts.register(client)
        self._p = self.keys.prefix + ":"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str | None = None,
        default_queue: str | None = None,
        timeout: float = 5.0,
        tls_insecure: bool = False,
    ) -> Self:
        """Connect lazily to ``redis://`` or ``rediss://`` ``url`` (user and password may be in it).

        The URL is read as the backend reads it (:func:`worker_redis._connect.parse_url`): its ``?prefix=`` and
        ``?default_queue=`` apply unless given here, and the backend's other options are ignored.
        """
        from redis.asyncio import Redis  # lazy: keeps `import worker_redis.admin` light

        parsed = parse_url(url)
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # One attempt: an admin script is never re-sent blindly after a lost reply (and an operator wants the error).
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if parsed.url.startswith("rediss:") and tls_insecure:
            options.update(ssl_cert_reqs="none", ssl_check_hostname=False)
        try:
            client = Redis.from_url(parsed.url, **options)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid redis URL: {exc}") from None
        return cls(
            client,
            prefix=prefix if prefix is not None else parsed.prefix or DEFAULT_PREFIX,
            default_queue=default_queue if default_queue is not None else parsed.default_queue or DEFAULT_QUEUE,
            where=parsed.where,
        )

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _seed(self) -> str:
        return f"admin-{uuid.uuid4().hex}"

    # -- pause -------------------------------------------------------------------------------------
    async def ping(self) -> None:
        """Check that Redis answers (and that the credentials are accepted)."""
        with redis_errors(self.where):
            await self.client.ping()

    async def pause(self) -> None:
        """Pause every dequeue of the deployment (``P:paused`` = ``"1"``)."""
        with redis_errors(self.where):
            await self.client.set(self.keys.paused, "1")

    async def resume(self) -> None:
        """Lift the global pause."""
        with redis_errors(self.where):
            await self.client.delete(self.keys.paused)

    async def pause_queue(self, name: str, *, paused: bool = True) -> None:
        """Pause (or resume) one queue; an unknown queue is a ConfigurationError and changes nothing.

        Known: the default queue, a queue with tasks or a weight, a paused one, and one forgotten after 15 minutes
        without a task (for 30 days, the 10,000 latest), so that an idle queue can be paused before its next task.
        """
        queue = normalize_queue(name, self.default_queue)
        k = self.keys
        with redis_errors(self.where):
            ok = await self.scripts.pause_queue(
                keys=[k.queues, k.paused_queues, k.wake, k.queues_forgotten],
                args=[queue, self.default_queue, int(paused), _WAKE_CAP],
            )
        if not ok:
            raise ConfigurationError(f"unknown queue {queue!r}")

    async def resume_queue(self, name: str) -> None:
        """Resume one paused queue."""
        await self.pause_queue(name, paused=False)

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues (sorted)."""
        overview = await self.overview(count_dead=False)
        return PauseState(paused=overview.paused, paused_queues=overview.paused_queues)

    # -- counts ------------------------------------------------------------------------------------
    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue ready/processing/dead counts, the DLQ length and the pause flags.

        ``queues`` limits the listing to these names; by default every known queue (``["default"]``
        when none is known). Per-queue dead counts read at most ``DEAD_COUNT_LIMIT`` DLQ ids; beyond
        that (or with ``count_dead=False``) they are ``None``.
        """
        k = self.keys
        now = now_ms()
        names = [normalize_queue(q, self.default_queue) for q in queues]
        with redis_errors(self.where):
            raw = await self.scripts.overview(
                keys=[k.paused, k.paused_queues, k.queues, k.dead],
                args=[self._p, self.default_queue, _MAX_QUEUES, now, *names],
            )
            paused, dead_len, paused_raw, flat = int(raw[0]), int(raw[1]), raw[2], raw[3]
            dead_by_queue = await self._dead_by_queue(dead_len) if count_dead else None
        infos = []
        for i in range(0, len(flat), 6):
            name = _s(flat[i])
            dead = None if dead_by_queue is None else dead_by_queue.get(name, 0)
            oldest = int(float(flat[i + 5]))
            age = max(0, now - oldest) / 1000 if oldest >= 0 else 0.0
            info = QueueInfo(
                name, int(flat[i + 1]), int(flat[i + 2]), dead, bool(int(flat[i + 3])), int(flat[i + 4]), age
            )
            infos.append(info)
        infos.sort(key=lambda q: q.name)
        return Overview(
            queues=tuple(infos),
            dead=dead_len,
            paused=bool(paused),
            paused_queues=tuple(sorted(_s(n) for n in paused_raw)),
        )

    async def _dead_by_queue(self, dead_len: int) -> dict[str, int] | None:
        if dead_len > DEAD_COUNT_LIMIT:
            return None
        counts: dict[str, int] = {}
        async for _id, _score, exists, values in self.page_entries("list", self.keys.dead, ("queue",)):
            if exists:
                name = _s(values[0]) if values[0] else self.default_queue
                counts[name] = counts.get(name, 0) + 1
        return counts

    async def queue_names(self) -> list[str]:
        """Known queue names, sorted (``["default"]`` when none is known)."""
        return [q.name for q in (await self.overview(count_dead=False)).queues]

    async def dlq_size(self) -> int:
        """Length of the DLQ."""
        with redis_errors(self.where):
            return int(await self.client.llen(self.keys.dead))

    # -- paged reads -------------------------------------------------------------------------------
    async def page_entries(
        self, kind: str, key: str, fields: Sequence[str] = (), *, page: int = _PAGE, start: int = 0
    ) -> AsyncIterator[tuple[str, int, bool, list[Any]]]:
        """Walk a ZSET (``kind="zset"``, by score) or the DLQ (``"list"``, newest first) in bounded pages.

        Yields ``(id, score, hash exists, values)``: ``values`` are the HMGET of ``fields`` or, with no
        fields, the HGETALL pairs. The walk begins at rank ``start`` and stops at the size the source
        had when it began, so a source that keeps growing cannot keep it running.
        """
        with redis_errors(self.where):
            total = int(await (self.client.zcard(key) if kind == "zset" else self.client.llen(key)))
            while start < total:
                stop = min(start + page, total) - 1
                raw = await self.scripts.page(keys=[key], args=[kind, start, stop, self.keys.task_prefix, *fields])
                if not raw:
                    return
                for i in range(0, len(raw), 4):
                    score = int(float(raw[i + 1])) if raw[i + 1] else 0
                    yield _s(raw[i]), score, bool(raw[i + 2]), list(raw[i + 3])
                start = stop + 1

    async def ids_from(self, source: str, *, from_queue: str = "", limit: int = 100) -> list[str]:
        """The first ``limit`` ids (0 = all) of the DLQ (newest first) or of one queue's ready/processing set."""
        if source not in SOURCES:
            raise ConfigurationError("source must be dlq, ready, or processing")
        if source != "dlq" and not from_queue.strip():
            raise ConfigurationError("--from-queue is required for source ready/processing")
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        if source == "dlq":
            kind, key = "list", self.keys.dead
        else:
            queue = normalize_queue(from_queue, self.default_queue)
            kind = "zset"
            key = self.keys.ready(queue) if source == "ready" else self.keys.processing(queue)
        with redis_errors(self.where):
            ids: list[str] = []
            while True:
                start = len(ids)
                stop = start + _PAGE - 1 if not limit else min(start + _PAGE, limit) - 1
                if stop < start:
                    break
                read = self.client.zrange if kind == "zset" else self.client.lrange
                page = await read(key, start, stop)
                ids.extend(_s(x) for x in page)
                if len(page) < stop - start + 1:
                    break
            return ids

    async def missing_ids(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` that have no task hash (checked in bounded pipelined batches)."""
        todo = clean_ids(ids)
        missing: list[str] = []
        with redis_errors(self.where):
            for chunk in _chunks(todo):
                pipe = self.client.pipeline(transaction=False)
                for task_id in chunk:
                    pipe.exists(self.keys.task(task_id))
                found = await pipe.execute()
                missing.extend(t for t, n in zip(chunk, found, strict=True) if not n)
        return missing

    # -- one task ----------------------------------------------------------------------------------
    async def nodes(self) -> list[NodeInfo]:
        """The live worker nodes (heartbeat not expired), most recently started first; at most 1,000."""
        now = now_ms()
        with redis_errors(self.where):
            ids = await self.client.zrangebyscore(self.keys.nodes, now, "+inf", start=0, num=_MAX_NODES)
            async with self.client.pipeline(transaction=False) as pipe:
                for raw in ids:
                    pipe.hgetall(self.keys.node(_s(raw)))
                hashes = await pipe.execute() if ids else []
        nodes = [node_from_fields(_s(raw), fields) for raw, fields in zip(ids, hashes, strict=True) if fields]
        return sorted(nodes, key=lambda node: (-node.started_ms, node.id))

    async def get(self, task_id: str) -> TaskRecord:
        """The task's hash and state; :class:`~worker_core.errors.TaskNotFoundError` when there is no hash."""
        task_id = task_id.strip()
        if not task_id:
            raise ConfigurationError("--id is required")
        with redis_errors(self.where):
            raw = await self.scripts.get(
                keys=[self.keys.task(task_id), self.keys.dead], args=[self._p, task_id, self.default_queue]
            )
        if not raw:
            raise TaskNotFoundError(f"task {task_id} not found")
        pairs = raw[2]
        fields = {_s(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)}
        score = int(float(raw[1])) if raw[1] else 0
        return record_from_fields(task_id, TaskState(_s(raw[0])), fields, score=score, default_queue=self.default_queue)
