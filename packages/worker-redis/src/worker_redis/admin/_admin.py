"""``RedisAdmin``: the operator's view of one deployment's durable queues (what workerctl runs)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence

from worker_core.admin import ScheduleStoreAdmin, ScheduleSummary
from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_core.schedules import ScheduleEvent

from worker_redis._errors import redis_errors
from worker_redis.backend import RedisDurableBackend
from worker_redis.keys import normalize_queue

from ._browse import AdminBrowse
from ._ops import _WAKE_CAP, _s, now_ms
from ._records import DLQEntry, DLQEntryDetail, DLQPage, SnapshotEntry, TaskRecord, TaskState, record_from_fields

__all__ = ("DLQ_PAGE_LIMIT", "DLQ_SCAN_LIMIT", "RedisAdmin")

#: DLQ entries one filtered listing reads at most (go-worker refuses filters above 2,000 entries).
DLQ_SCAN_LIMIT = 10_000
#: Entries one DLQ page returns at most.
DLQ_PAGE_LIMIT = 1000
_PAGE_MAX = 500
# Fields a dump or a DLQ listing needs: everything but the payload, which can be large.
_RECORD_FIELDS = (
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


class RedisAdmin(AdminBrowse):
    """Admin operations over go-worker's Redis key layout (the README's "Key layout"), for workerctl and admin APIs.

    Args:
        client: a ``redis.asyncio.Redis`` created with ``decode_responses=False`` (payloads are bytes).
        prefix: the deployment's key prefix (``go-worker`` -> ``{go-worker}:...``).
        default_queue: the queue of tasks whose hash names none.
        where: how errors name the server (``redis at host:port``); never includes a password.

    Every state change is one Lua script (``lua/admin_*.lua``) or a loop of bounded script calls;
    reads are bounded pages. Nothing uses ``KEYS`` and nothing reads a whole set or list in one reply.
    Every method raises :class:`~worker_core.errors.BackendUnavailableError` when Redis cannot be
    reached, :class:`~worker_core.errors.ConfigurationError` for bad arguments or credentials, and
    :class:`~worker_core.errors.BackendError` for any other Redis failure.
    """

    # -- DLQ ---------------------------------------------------------------------------------------
    async def dlq(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        queue: str = "",
        handler: str = "",
        query: str = "",
    ) -> DLQPage:
        """A page of the DLQ, newest first, optionally filtered.

        ``limit`` is at most :data:`DLQ_PAGE_LIMIT`. ``queue`` and ``handler`` match exactly; ``query`` is
        a case-insensitive substring of the id, queue or handler. A filtered listing reads at most
        :data:`DLQ_SCAN_LIMIT` entries and says so with ``truncated``.
        """
        if limit <= 0:
            limit = 100
        if limit > DLQ_PAGE_LIMIT:
            raise ConfigurationError(f"limit must be <= {DLQ_PAGE_LIMIT}")
        if offset < 0:
            raise ConfigurationError("offset must be >= 0")
        needle = query.strip().lower()
        filtered = bool(queue.strip() or handler.strip() or needle)
        want_queue = normalize_queue(queue, self.default_queue) if queue.strip() else ""
        now = now_ms()
        entries: list[DLQEntry] = []
        matched = scanned = 0
        truncated = False
        total = await self.dlq_size()
        # Unfiltered, the page starts at rank `offset`; filtered, the walk starts at the head.
        start = 0 if filtered else offset
        async for task_id, _score, exists, values in self.page_entries(
            "list", self.keys.dead, _RECORD_FIELDS, page=min(_PAGE_MAX, max(limit, 50)), start=start
        ):
            if filtered and scanned >= DLQ_SCAN_LIMIT:
                truncated = True
                break
            scanned += 1
            fields = dict(zip(_RECORD_FIELDS, values, strict=True)) if exists else {}
            record = record_from_fields(task_id, TaskState.DEAD, fields, default_queue=self.default_queue)
            if want_queue and record.queue != want_queue:
                continue
            if handler.strip() and record.handler != handler.strip():
                continue
            if needle and not any(needle in v.lower() for v in (record.id, record.queue, record.handler)):
                continue
            matched += 1
            if filtered and matched <= offset:
                continue
            entries.append(_dlq_entry(record, now))
            if len(entries) >= limit:
                break
        return DLQPage(tuple(entries), total, offset, limit, scanned, truncated)

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail; TaskNotFoundError when it has no hash or is not in the DLQ."""
        record = await self.get(task_id)
        if record.status is not TaskState.DEAD:
            raise TaskNotFoundError(f"task {record.id} is not in the DLQ (status {record.status.value})")
        return DLQEntryDetail(
            entry=_dlq_entry(record, now_ms()),
            failed_at_ms=record.failed_at_ms,
            updated_at_ms=record.updated_at_ms,
            payload_size=record.payload_size,
            metadata=record.metadata,
            error_type=record.error_type,
            traceback=record.error_traceback,
        )

    # -- dump --------------------------------------------------------------------------------------
    async def dump(
        self,
        *,
        queues: Sequence[str] = (),
        ready: bool = True,
        processing: bool = False,
        dlq: bool = False,
        limit: int = 100,
        handler: str = "",
        min_retries: int = 0,
        max_retries: int = 0,
        older_than: float = 0.0,
        newer_than: float = 0.0,
    ) -> AsyncIterator[TaskRecord]:
        """Task records as go-worker's ``dump`` lists them: ready, then processing (queues sorted), then dead.

        ``limit`` (0 = all) counts the records emitted per queue and state, after the filters:
        ``handler`` matches exactly, ``min_retries``/``max_retries`` (0 = no bound) bound the configured
        retries, and ``older_than``/``newer_than`` (seconds) the age of ``updated_at_ms`` (or
        ``ready_at_ms``); a task without timestamps always passes.
        """
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        if not (ready or processing or dlq):
            ready = True
        names = [normalize_queue(q, self.default_queue) for q in queues] or await self.queue_names()
        names.sort()
        now = now_ms()

        def keep(record: TaskRecord) -> bool:
            if handler and record.handler != handler:
                return False
            if min_retries and record.retries < min_retries:
                return False
            if max_retries and record.retries > max_retries:
                return False
            ts = record.updated_at_ms or record.ready_at_ms
            if ts and older_than > 0 and ts > now - older_than * 1000:
                return False
            return not (ts and newer_than > 0 and ts < now - newer_than * 1000)

        sources: list[tuple[TaskState, str, str]] = []
        if ready:
            sources += [(TaskState.READY, "zset", self.keys.ready(q)) for q in names]
        if processing:
            sources += [(TaskState.PROCESSING, "zset", self.keys.processing(q)) for q in names]
        if dlq:
            sources.append((TaskState.DEAD, "list", self.keys.dead))
        wanted = set(names) if queues else None
        for state, kind, key in sources:
            emitted = 0
            async for task_id, score, exists, values in self.page_entries(kind, key, _RECORD_FIELDS):
                if not exists:
                    continue  # an orphan id: nothing to show
                fields = dict(zip(_RECORD_FIELDS, values, strict=True))
                record = record_from_fields(task_id, state, fields, score=score, default_queue=self.default_queue)
                if state is TaskState.DEAD and wanted is not None and record.queue not in wanted:
                    continue
                if not keep(record):
                    continue
                yield record
                emitted += 1
                if limit and emitted >= limit:
                    break

    # -- snapshots ---------------------------------------------------------------------------------
    async def export(
        self,
        *,
        queues: Sequence[str] = (),
        ready: bool = True,
        processing: bool = False,
        dlq: bool = False,
        limit: int = 100,
    ) -> AsyncIterator[SnapshotEntry]:
        """Snapshot entries (every hash field, payload included) of ready, processing and dead tasks.

        ``limit`` (0 = all) is per queue and state. Orphan ids (no hash) are skipped.
        """
        if limit < 0:
            raise ConfigurationError("limit must be >= 0")
        if not (ready or processing or dlq):
            ready = True
        names = [normalize_queue(q, self.default_queue) for q in queues] or await self.queue_names()
        names.sort()
        sources: list[tuple[str, str, str]] = []
        if ready:
            sources += [("ready", "zset", self.keys.ready(q)) for q in names]
        if processing:
            sources += [("processing", "zset", self.keys.processing(q)) for q in names]
        if dlq:
            sources.append(("dead", "list", self.keys.dead))
        wanted = set(names) if queues else None
        for status, kind, key in sources:
            emitted = 0
            async for task_id, score, exists, pairs in self.page_entries(kind, key, page=100):
                if not exists:
                    continue
                fields = {_s(pairs[i]): bytes(pairs[i + 1]) for i in range(0, len(pairs), 2)}
                queue = _s(fields.get("queue") or b"") or self.default_queue
                if status == "dead" and wanted is not None and queue not in wanted:
                    continue
                yield SnapshotEntry(id=task_id, status=status, queue=queue, fields=fields, score=score)
                emitted += 1
                if limit and emitted >= limit:
                    break

    async def import_entries(self, entries: Iterable[SnapshotEntry]) -> int:
        """Write snapshot entries, each atomically (one script): the hash is replaced, then placed by status.

        A ready entry without a score gets its ``ready_at_ms`` (or now); a processing one gets now (its
        lease expires at once and it is redelivered). Every imported task gets a fresh lease token.
        Validate the whole snapshot first (:meth:`SnapshotEntry.from_json`): this writes entry by entry.
        """
        k = self.keys
        count = 0
        with redis_errors(self.where):
            for entry in entries:
                queue = normalize_queue(entry.queue, self.default_queue)
                fields = dict(entry.fields)
                fields["queue"] = queue.encode()
                score = entry.score
                if score <= 0 and entry.status == "ready":
                    try:
                        score = int(fields.get("ready_at_ms") or 0)
                    except ValueError:
                        score = 0
                if score <= 0:
                    score = now_ms()
                flat: list[bytes | str] = []
                for name, value in fields.items():
                    flat += [name, value]
                token = f"admin-{uuid.uuid4().hex}:{entry.id}"
                await self.scripts.import_entry(
                    keys=[k.task(entry.id), k.ready(queue), k.processing(queue), k.dead, k.queues, k.wake],
                    args=[entry.id, entry.status, score, token, _WAKE_CAP, *flat],
                )
                count += 1
        return count

    # -- schedules (ScheduleAdmin, over the backend's ScheduleBackend: worker_core.admin.ScheduleStoreAdmin) --
    def _schedule_store(self) -> ScheduleStoreAdmin:
        """The schedule state of this deployment, through a backend on this admin's client (made on first use)."""
        store: ScheduleStoreAdmin | None = getattr(self, "_schedule_admin", None)
        if store is None:
            backend = RedisDurableBackend(
                self.client, prefix=self.keys.raw_prefix, default_queue=self.default_queue, where=self.where
            )
            store = self._schedule_admin = ScheduleStoreAdmin(backend)
        return store

    async def schedules(self) -> list[ScheduleSummary]:
        """Every durable schedule some node published, by name, with its next and last run and pause flag."""
        return await self._schedule_store().schedules()

    async def pause_schedule(self, name: str) -> None:
        """Pause a schedule on every node (ConfigurationError when no node published it)."""
        await self._schedule_store().pause_schedule(name)

    async def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule (ConfigurationError when no node published it)."""
        await self._schedule_store().resume_schedule(name)

    async def run_schedule_now(self, name: str) -> str:
        """Request one run now: ``""``, one node that runs the schedule takes it and enqueues the task."""
        return await self._schedule_store().run_schedule_now(name)

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of a schedule, newest first."""
        return await self._schedule_store().schedule_events(name, limit)


def _dlq_entry(record: TaskRecord, now: int) -> DLQEntry:
    since = record.failed_at_ms or record.updated_at_ms
    return DLQEntry(
        id=record.id,
        queue=record.queue,
        handler=record.handler,
        attempts=record.attempts,
        age_ms=max(0, now - since) if since else 0,
        last_error=record.last_error,
    )
