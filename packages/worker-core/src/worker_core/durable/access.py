"""What a :class:`~worker_core.TaskManager` offers of its durable backend, behind the facade's durable methods.

:class:`DurableAccess` answers the manager's durable calls that are not the lease loop: the configured backend,
registration (through :class:`~worker_core.durable.registration.DurableRegistrar`), and the result store's
lookups (stored outcomes, recent outcomes, which source a :class:`~worker_core.TaskHandle` reads). Without a
durable backend each of them raises :class:`~worker_core.errors.ConfigurationError` (``handle`` then reads
only the manager's own tasks).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from worker_core.errors import ConfigurationError, TaskNotFoundError
from worker_core.handles import DurableTasks, LocalTasks, StoredTasks, TaskHandle
from worker_core.options import config_seconds

from .outcomes import ResultStoreBackend, TaskOutcome

if TYPE_CHECKING:
    from worker_core.task import Task

    from .config import DurableConfig
    from .registration import DurableRegistrar
    from .types import DurableBackend, DurableTask

__all__ = ("DurableAccess",)


class DurableAccess:
    """The durable backend as the facade sees it: registration and result-store lookups."""

    __slots__ = ("_config", "_default_queue", "_registrar")

    def __init__(
        self, config: DurableConfig | None, registrar: DurableRegistrar | None, default_queue: Callable[[], str]
    ) -> None:
        self._config = config
        self._registrar = registrar
        self._default_queue = default_queue

    @property
    def enabled(self) -> bool:
        """Whether a durable backend is configured."""
        return self._config is not None

    def registrar(self) -> DurableRegistrar:
        """The registrar (what ``register_durable_task(s)`` and durable schedules enqueue through).

        Raises:
            ConfigurationError: no durable backend is configured.
        """
        registrar = self._registrar
        if registrar is None:
            raise ConfigurationError("durable backend not configured")
        return registrar

    def backend(self) -> DurableBackend:
        """The backend object (a URL is resolved through the backend plugins on first use).

        Raises:
            ConfigurationError: no backend configured, or an unknown URL scheme.
        """
        config = self._config
        if config is None:
            raise ConfigurationError("durable backend not configured")
        return config.backend()

    async def register(self, task: DurableTask) -> uuid.UUID:
        """``register_durable_task``."""
        return await self.registrar().register(task)

    async def register_many(self, tasks: Sequence[DurableTask]) -> list[uuid.UUID]:
        """``register_durable_tasks``."""
        return await self.registrar().register_many(tasks)

    # ------------------------------------------------------------------------------------ result store

    def result_store(self) -> ResultStoreBackend | None:
        """The backend when it stores task results, else ``None`` (also without a backend)."""
        config = self._config
        if config is None:
            return None
        backend = config.backend()
        return backend if isinstance(backend, ResultStoreBackend) else None

    def require_store(self) -> ResultStoreBackend:
        """The result store.

        Raises:
            ConfigurationError: no durable backend, or one that stores no results.
        """
        store = self.result_store()
        if store is None:
            raise ConfigurationError("the durable backend does not store task results")
        return store

    async def outcome(self, task_id: uuid.UUID, wait: float | timedelta | None) -> TaskOutcome | None:
        """``durable_outcome``: the stored outcome, waiting up to ``wait`` seconds (``None``: as long as it takes).

        Raises:
            ConfigurationError: no result store, or a bad ``wait``.
        """
        store = self.require_store()
        wait_s = None if wait is None else config_seconds(wait, "wait", allow_zero=True)
        if wait_s == 0.0:
            return await store.get_outcome(task_id)
        return await store.wait_outcome(task_id, wait_s)

    async def recent(self, queue: str, limit: int) -> list[TaskOutcome]:
        """``recent_outcomes`` of ``queue`` (``""``: the default queue), newest first."""
        store = self.require_store()
        return list(await store.recent_outcomes(queue or self._default_queue(), limit))

    def handle(self, task_id: uuid.UUID, task: Task[Any] | None, local: LocalTasks) -> TaskHandle[Any]:
        """The handle on ``task_id``: ``task`` is the manager's own task with this id, if it holds one.

        A durable task held here is awaited on the store when results are stored (a replay may run it again
        elsewhere); any other task this manager holds is read from the task; an id it does not hold is read
        from the store.

        Raises:
            TaskNotFoundError: the manager holds no such task and no result store is configured.
        """
        store = self.result_store()
        if task is not None:
            config = self._config
            ttl = config.options.result_ttl_s if config is not None else None
            if task.durable and store is not None and ttl:
                # the store, not the run seen here, knows how it ended: a replay may run it again
                return DurableTasks(local, StoredTasks(store), ttl).handle(task)
            return local.handle(task)
        if store is None:
            raise TaskNotFoundError(f"task with ID {task_id} not found")
        return StoredTasks(store).handle(task_id)
