"""One admin protocol for every durable backend: :class:`DurableAdmin`, its records, and :func:`open_admin`.

::

    from worker_core.admin import open_admin

    async with open_admin("redis://localhost:6379/0") as admin:   # or sqlite:///tasks.db, postgresql://...
        overview = await admin.overview()
        page = await admin.dlq(queue="emails")
        await admin.replay_dlq_ids([entry.id for entry in page.entries])

Optional capabilities a backend may add, checked with ``isinstance``: :class:`TaskBrowser` (tasks by state,
filtered and paged) and :class:`ScheduleAdmin` (periodic schedules).

Backends register a factory per URL scheme with the ``worker_register_admins`` hook;
:class:`~worker_core.testing.DurableAdminConformance` is the suite each implementation passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from worker_core.errors import ConfigurationError

from .browse import BROWSE_PAGE_LIMIT as BROWSE_PAGE_LIMIT
from .browse import BROWSE_SCAN_LIMIT as BROWSE_SCAN_LIMIT
from .browse import BROWSE_STATES as BROWSE_STATES
from .browse import ScheduleAdmin as ScheduleAdmin
from .browse import ScheduleSummary as ScheduleSummary
from .browse import TaskBrowser as TaskBrowser
from .browse import TaskPage as TaskPage
from .protocol import SOURCES as SOURCES
from .protocol import DurableAdmin as DurableAdmin
from .records import DLQEntry as DLQEntry
from .records import DLQEntryDetail as DLQEntryDetail
from .records import DLQPage as DLQPage
from .records import MoveResult as MoveResult
from .records import NodeInfo as NodeInfo
from .records import Overview as Overview
from .records import PauseState as PauseState
from .records import PurgeResult as PurgeResult
from .records import QueueInfo as QueueInfo
from .records import TaskRecord as TaskRecord
from .records import TaskState as TaskState
from .records import parse_weights as parse_weights
from .records import rfc3339 as rfc3339
from .schedules import ScheduleStoreAdmin as ScheduleStoreAdmin

if TYPE_CHECKING:
    from worker_core.plugins import Plugins

__all__ = (
    "BROWSE_PAGE_LIMIT",
    "BROWSE_SCAN_LIMIT",
    "BROWSE_STATES",
    "SOURCES",
    "DLQEntry",
    "DLQEntryDetail",
    "DLQPage",
    "DurableAdmin",
    "MoveResult",
    "NodeInfo",
    "Overview",
    "PauseState",
    "PurgeResult",
    "QueueInfo",
    "ScheduleAdmin",
    "ScheduleStoreAdmin",
    "ScheduleSummary",
    "TaskBrowser",
    "TaskPage",
    "TaskRecord",
    "TaskState",
    "open_admin",
    "parse_weights",
    "rfc3339",
)


def open_admin(url: str, *, plugins: Plugins | None = None) -> DurableAdmin:
    """An admin for the store at ``url``, from the plugin that registered its scheme (no I/O yet).

    Raises:
        ConfigurationError: the URL has no scheme, or no installed plugin provides an admin for it (the
            message names the installed schemes).
    """
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigurationError(f"not a URL (no scheme): {url!r}")
    if plugins is None:
        from worker_core.plugins import Plugins

        plugins = Plugins()
    factory = plugins.admins().get(scheme)
    admin: DurableAdmin = factory(url)
    return admin
