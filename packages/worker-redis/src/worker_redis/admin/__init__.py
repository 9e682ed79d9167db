"""Admin operations over the durable Redis key layout: what workerctl and an admin API run.

>>> admin = RedisAdmin.from_url("redis://localhost:6379/0", prefix="go-worker")  # doctest: +SKIP
>>> (await admin.overview()).total_ready  # doctest: +SKIP
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
