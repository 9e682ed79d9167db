"""Admin operations over the durable Redis key layout: what workerctl and an admin API run.

Every state change is one Lua script (``worker_redis/lua/admin_*.lua``) over a bounded batch; reads are
bounded pages; nothing uses ``KEYS``. Results are typed dataclasses; failures are worker-core errors
(``BackendUnavailableError``, ``ConfigurationError``, ``TaskNotFoundError``, ``BackendError``)::

    import asyncio
    from worker_redis.admin import RedisAdmin

    async def main() -> None:
        async with RedisAdmin.from_url("redis://localhost:6379/0", prefix="go-worker") as admin:
            overview = await admin.overview()              # per-queue ready/processing/dead, pause flags
            print(overview.total_ready, overview.dead)
            page = await admin.dlq(queue="emails", query="timeout")   # newest first, filtered
            for entry in page.entries:
                print(entry.id, entry.attempts, entry.last_error)
            await admin.replay_dlq(limit=10, reset_attempts=True)      # oldest first
            await admin.pause_queue("default")                        # ConfigurationError if unknown
            record = await admin.get(page.entries[0].id) if page.entries else None
            snapshot = [e.to_json() async for e in admin.export(dlq=True, limit=0)]  # JSON-ready

    asyncio.run(main())
"""

from ._admin import DLQ_PAGE_LIMIT as DLQ_PAGE_LIMIT
from ._admin import DLQ_SCAN_LIMIT as DLQ_SCAN_LIMIT
from ._admin import RedisAdmin as RedisAdmin
from ._ops import DEAD_COUNT_LIMIT as DEAD_COUNT_LIMIT
from ._ops import MAX_IDS as MAX_IDS
from ._ops import SOURCES as SOURCES
from ._ops import clean_ids as clean_ids
from ._records import DLQEntry as DLQEntry
from ._records import DLQEntryDetail as DLQEntryDetail
from ._records import DLQPage as DLQPage
from ._records import MoveResult as MoveResult
from ._records import NodeInfo as NodeInfo
from ._records import Overview as Overview
from ._records import PauseState as PauseState
from ._records import PurgeResult as PurgeResult
from ._records import QueueInfo as QueueInfo
from ._records import SnapshotEntry as SnapshotEntry
from ._records import TaskRecord as TaskRecord
from ._records import TaskState as TaskState
from ._records import parse_metadata as parse_metadata
from ._records import rfc3339 as rfc3339

__all__ = (
    "DEAD_COUNT_LIMIT",
    "DLQ_PAGE_LIMIT",
    "DLQ_SCAN_LIMIT",
    "MAX_IDS",
    "SOURCES",
    "DLQEntry",
    "DLQEntryDetail",
    "DLQPage",
    "MoveResult",
    "NodeInfo",
    "Overview",
    "PauseState",
    "PurgeResult",
    "QueueInfo",
    "RedisAdmin",
    "SnapshotEntry",
    "TaskRecord",
    "TaskState",
    "clean_ids",
    "parse_metadata",
    "rfc3339",
)
