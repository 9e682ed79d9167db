"""The admin protocol: the operations an operator runs on a durable store, the same for every backend.

``workerctl durable ...`` and dashboards speak only this protocol; each backend package implements it
(worker-redis's :class:`~worker_redis.admin.RedisAdmin`, and the SQL backends') and registers a factory for its
URL schemes with the ``worker_register_admins`` hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, Self, runtime_checkable

from .records import DLQEntryDetail, DLQPage, MoveResult, NodeInfo, Overview, PauseState, PurgeResult, TaskRecord

__all__ = ("SOURCES", "DurableAdmin")

#: The task sets :meth:`DurableAdmin.ids_from` reads ids from.
SOURCES = ("dlq", "ready", "processing")


@runtime_checkable
class DurableAdmin(Protocol):
    """Inspect and repair a durable store: counts, pause flags, the DLQ, single tasks, bulk moves.

    Every read is bounded (pages, scan limits); every state change is atomic per task and fences the task
    (a worker still holding a moved task's lease can no longer ack, nack or fail it). Failures are
    worker-core errors: :class:`~worker_core.errors.BackendUnavailableError` (the store cannot be reached),
    :class:`~worker_core.errors.ConfigurationError` (bad arguments, an unknown queue),
    :class:`~worker_core.errors.TaskNotFoundError`, :class:`~worker_core.errors.BackendError`.
    """

    #: Where the store is, for messages (``"redis at host:6379"``); never a password.
    where: str

    async def aclose(self) -> None:
        """Release the connections this admin opened."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def ping(self) -> None:
        """Check the store answers (BackendUnavailableError otherwise)."""
        ...

    async def pause(self) -> None:
        """Stop every node from leasing (tasks already leased finish)."""
        ...

    async def resume(self) -> None:
        """Undo :meth:`pause`."""
        ...

    async def pause_queue(self, name: str, *, paused: bool = True) -> None:
        """Stop (or, with ``paused=False``, restart) leasing from one queue."""
        ...

    async def resume_queue(self, name: str) -> None:
        """Restart leasing from one queue."""
        ...

    async def pause_state(self) -> PauseState:
        """The global pause flag and the paused queues."""
        ...

    async def overview(self, queues: Sequence[str] = (), *, count_dead: bool = True) -> Overview:
        """Per-queue counts (every known queue when ``queues`` is empty), the DLQ length and the pause flags."""
        ...

    async def queue_names(self) -> list[str]:
        """Every queue the store knows, sorted."""
        ...

    async def dlq_size(self) -> int:
        """How many tasks are dead-lettered."""
        ...

    async def dlq(
        self, *, limit: int = 100, offset: int = 0, queue: str = "", handler: str = "", query: str = ""
    ) -> DLQPage:
        """A page of the DLQ, newest first; ``queue``/``handler`` match exactly, ``query`` is a substring."""
        ...

    async def dlq_entry(self, task_id: str) -> DLQEntryDetail:
        """One dead task in detail (TaskNotFoundError when it is not in the DLQ)."""
        ...

    async def get(self, task_id: str) -> TaskRecord:
        """One task, wherever it is (TaskNotFoundError when it is nowhere)."""
        ...

    async def nodes(self) -> list[NodeInfo]:
        """The live worker nodes, from their heartbeats."""
        ...

    async def replay_dlq(self, limit: int = 100, *, reset_attempts: bool = False) -> MoveResult:
        """Make up to ``limit`` dead tasks ready again, oldest first (``limit=0``: all)."""
        ...

    async def replay_dlq_ids(self, ids: Iterable[str], *, reset_attempts: bool = False) -> MoveResult:
        """Make these dead tasks ready again; ids that exist nowhere are reported in ``missing``."""
        ...

    async def requeue(
        self, ids: Iterable[str], *, queue: str = "", delay: float = 0.0, reset_attempts: bool = False
    ) -> MoveResult:
        """Make these tasks ready (after ``delay`` seconds, in ``queue`` if given), whatever their state."""
        ...

    async def delete(self, ids: Iterable[str], *, queue: str = "", delete_hash: bool = False) -> MoveResult:
        """Take these tasks out of every set (and delete their records with ``delete_hash``)."""
        ...

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
        """Remove up to ``limit`` (0: all) entries from the chosen sets of the chosen queues (all when empty)."""
        ...

    async def ids_from(self, source: str, *, from_queue: str = "", limit: int = 100) -> list[str]:
        """The first ``limit`` ids (0: all) of the DLQ (newest first) or of one queue's ready or processing set.

        ``source`` is one of :data:`SOURCES`; another is a ConfigurationError.
        """
        ...

    async def missing_ids(self, ids: Iterable[str]) -> list[str]:
        """The ids among ``ids`` that have no stored task."""
        ...
