"""Tasks by state, filtered and paged, newest first: worker-core's optional ``TaskBrowser`` for Redis.

Ready, delayed and processing tasks are read with ``ZREVRANGEBYSCORE ... LIMIT`` pages per queue (merged by
score over queues), the DLQ with ``LRANGE`` pages from its head; the fields come from pipelined ``HMGET``.
Every browse reads at most ``BROWSE_SCAN_LIMIT`` entries; nothing reads a whole set.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence

from worker_core.admin.browse import BROWSE_PAGE_LIMIT, BROWSE_SCAN_LIMIT, BROWSE_STATES, TaskPage
from worker_core.errors import ConfigurationError, TaskNotFoundError

from worker_redis._errors import redis_errors
from worker_redis.keys import normalize_queue

from ._moves import AdminMoves
from ._ops import _s, now_ms
from ._records import TaskRecord, TaskState, record_from_fields

__all__ = ("AdminBrowse",)

_FIELDS = (
    "handler",
    "queue",
    "priority",
    "weight",
    "retries",
    "retry_delay_ms",
    "attempts",
    "ready_at_ms",
    "updated_at_ms",
    "lease_at_ms",
    "failed_at_ms",
    "last_error",
    "metadata",
    "lease_token",
)
_PAGE = 200


class AdminBrowse(AdminMoves):
    """``browse_tasks`` and ``task_payload``; see :class:`~worker_redis.admin.RedisAdmin`."""

    async def browse_tasks(
        self,
        state: str,
        *,
        queue: str = "",
        handler: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
        limit: int = 50,
        offset: int = 0,
    ) -> TaskPage:
        """A page of tasks in ``state`` (ready, delayed, processing, dead), newest first (see ``TaskBrowser``)."""
        if state not in BROWSE_STATES:
            raise ConfigurationError(f"state must be one of {', '.join(BROWSE_STATES)}, not {state!r}")
        if not 0 < limit <= BROWSE_PAGE_LIMIT:
            raise ConfigurationError(f"limit must be between 1 and {BROWSE_PAGE_LIMIT}")
        if offset < 0:
            raise ConfigurationError("offset must be >= 0")
        if since_ms < 0 or until_ms < 0:
            raise ConfigurationError("since_ms and until_ms must be >= 0")
        handler = handler.strip()
        want_queue = normalize_queue(queue, self.default_queue) if queue.strip() else ""
        now = now_ms()
        if state == "dead":
            candidates = self._dead_candidates()
        else:
            names = [want_queue] if want_queue else await self.queue_names()
            candidates = self._zset_candidates(state, names, since_ms, until_ms, now, window=offset + limit + 1)
        tasks: list[TaskRecord] = []
        scanned = matched = 0
        truncated = has_more = False
        status = (
            TaskState.DEAD if state == "dead" else TaskState.PROCESSING if state == "processing" else TaskState.READY
        )
        async for chunk in candidates:
            records = await self._records(chunk, status)
            for record in records:
                scanned += 1
                if record is None:
                    continue  # an orphan id: nothing to show
                if state == "dead":
                    if want_queue and record.queue != want_queue:
                        continue
                    at = record.failed_at_ms or record.updated_at_ms
                    if (since_ms and at < since_ms) or (until_ms and at > until_ms):
                        continue
                if handler and record.handler != handler:
                    continue
                matched += 1
                if matched <= offset:
                    continue
                if len(tasks) >= limit:
                    has_more = True
                    break
                tasks.append(record)
            if has_more:
                break
            if scanned >= BROWSE_SCAN_LIMIT:
                truncated = True
                break
        return TaskPage(tuple(tasks), state, offset, limit, scanned, truncated, has_more)

    async def task_payload(self, task_id: str) -> bytes:
        """The stored payload bytes of ``task_id`` (TaskNotFoundError when it has no hash)."""
        key = self.keys.task(task_id.strip())
        with redis_errors(self.where):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(key)
                pipe.hget(key, "payload")
                exists, payload = await pipe.execute()
        if not exists:
            raise TaskNotFoundError(f"task {task_id} not found")
        return bytes(payload or b"")

    # -- candidates: (id, score) chunks, newest first ---------------------------------------------
    async def _dead_candidates(self) -> AsyncIterator[list[tuple[str, int]]]:
        start = 0
        with redis_errors(self.where):
            while start < BROWSE_SCAN_LIMIT:
                ids = await self.client.lrange(self.keys.dead, start, start + _PAGE - 1)
                if not ids:
                    return
                yield [(_s(i), 0) for i in ids]
                if len(ids) < _PAGE:
                    return
                start += _PAGE

    async def _zset_candidates(
        self, state: str, names: Sequence[str], since_ms: int, until_ms: int, now: int, *, window: int
    ) -> AsyncIterator[list[tuple[str, int]]]:
        """Merge every queue's set by score, newest first; each queue is read in pages only as far as needed."""
        low: float = since_ms
        high: float = until_ms or float("inf")
        if state == "ready":
            high = min(high, now)
        elif state == "delayed":
            low = max(low, now + 1)
        if low > high:
            return
        keys = [self.keys.processing(q) if state == "processing" else self.keys.ready(q) for q in names]
        page = max(1, min(_PAGE, window))
        offsets = [0] * len(keys)
        exhausted = [False] * len(keys)
        heap: list[tuple[int, int, str]] = []
        hi = "+inf" if high == float("inf") else int(high)
        with redis_errors(self.where):

            async def fill(indexes: Sequence[int]) -> None:
                async with self.client.pipeline(transaction=False) as pipe:
                    for i in indexes:
                        pipe.zrevrangebyscore(keys[i], hi, int(low), start=offsets[i], num=page, withscores=True)
                    replies = await pipe.execute()
                for i, reply in zip(indexes, replies, strict=True):
                    offsets[i] += len(reply)
                    exhausted[i] = len(reply) < page
                    for member, score in reply:
                        heapq.heappush(heap, (-int(score), i, _s(member)))

            await fill(range(len(keys)))
            remaining = dict.fromkeys(range(len(keys)), 0)
            for _score, i, _id in heap:
                remaining[i] += 1
            chunk: list[tuple[str, int]] = []
            while heap:
                neg, i, task_id = heapq.heappop(heap)
                remaining[i] -= 1
                chunk.append((task_id, -neg))
                if remaining[i] == 0 and not exhausted[i]:
                    before = len(heap)
                    await fill([i])  # this queue's next page: it may hold the next-newest entries
                    remaining[i] = len(heap) - before
                if len(chunk) >= _PAGE or not heap:
                    yield chunk
                    chunk = []

    async def _records(self, chunk: Sequence[tuple[str, int]], status: TaskState) -> list[TaskRecord | None]:
        with redis_errors(self.where):
            async with self.client.pipeline(transaction=False) as pipe:
                for task_id, _score in chunk:
                    pipe.hmget(self.keys.task(task_id), _FIELDS)
                replies = await pipe.execute()
        out: list[TaskRecord | None] = []
        for (task_id, score), values in zip(chunk, replies, strict=True):
            if all(v is None for v in values):
                out.append(None)
                continue
            fields = {name: v for name, v in zip(_FIELDS, values, strict=True) if v is not None}
            out.append(record_from_fields(task_id, status, fields, score=score, default_queue=self.default_queue))
        return out
