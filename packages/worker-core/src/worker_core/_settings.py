"""The plain (sync) settings half of the public API: results, drop policy, retention, hooks, tracer, metrics."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from ._config import config_int
from ._engine import Engine
from .errors import ConfigurationError
from .hooks import TaskHooks
from .metrics import MetricsSnapshot
from .protocols import TaskTracer
from .results import DropPolicy, ResultSubscription
from .retention import RetentionPolicy

if TYPE_CHECKING:
    from .task import Task

__all__ = ("SettingsApi",)


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
class SettingsApi(Engine):
    """Setters and snapshots of a manager; :class:`~worker_core.TaskManager` inherits them."""

    def subscribe_results(self, buffer: int = 10) -> ResultSubscription:
        """Receive every result published from now on; see :class:`ResultSubscription`.

        Raises:
            ConfigurationError: ``buffer`` is not an int >= 1.
        """
        size = config_int(buffer, "buffer", 1)
        subscription = ResultSubscription(size, self._unsubscribe)
        if self._stopped:
            subscription._finish()
        else:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: ResultSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def get_results(self) -> ResultSubscription:
        """Compatibility shim for go-worker's ``GetResults``: ``subscribe_results(10)``."""
        return self.subscribe_results(10)

    def set_results_drop_policy(self, policy: DropPolicy) -> None:
        """What a full subscriber buffer drops: the new result (default) or the oldest buffered one.

        Raises:
            ConfigurationError: ``policy`` is not a :class:`DropPolicy`.
        """
        if not isinstance(policy, DropPolicy):
            raise ConfigurationError(f"policy must be a DropPolicy, got {policy!r}")
        self._drop_oldest = policy is DropPolicy.DROP_OLDEST

    def set_retention_policy(self, policy: RetentionPolicy | None) -> None:
        """Evict finished tasks by TTL and count (``None``: keep everything); prunes at once.

        Raises:
            ConfigurationError: a value is out of range.
        """
        if policy is not None and not isinstance(policy, RetentionPolicy):
            raise ConfigurationError(f"policy must be a RetentionPolicy, got {policy!r}")
        normalized = policy.normalized() if policy is not None else None
        if normalized is not None and normalized[0] is None and normalized[1] is None:
            normalized = None
        if self._retention is None and normalized is not None:
            # Finished tasks are queued for eviction only while a policy is set: catch up, in finish order.
            done = sorted((t for t in self._tasks.values() if t._completed_mono), key=_completed_at)
            self._terminal = deque(done)
        elif normalized is None:
            self._terminal.clear()
        self._retention = normalized
        self._retention_checked = 0.0
        if normalized is None:
            if self._retention_task is not None:
                self._retention_task.cancel()
                self._retention_task = None
            return
        if normalized[0] is not None and self._started and not self._stopped:
            self._start_retention_loop()
        self._prune(time.monotonic())

    def _start_retention_loop(self) -> None:
        if self._retention_task is None or self._retention_task.done():
            assert self._loop is not None
            self._retention_task = self._loop.create_task(self._retention_loop(), name="worker-core-retention")

    def set_hooks(self, hooks: TaskHooks | None) -> None:
        """Use ``hooks`` from now on (``None`` removes them).

        Raises:
            ConfigurationError: ``hooks`` is not a :class:`TaskHooks`.
        """
        if hooks is not None and not isinstance(hooks, TaskHooks):
            raise ConfigurationError(f"hooks must be a TaskHooks, got {hooks!r}")
        self._hooks = hooks
        self._refresh_fast_path()

    def set_tracer(self, tracer: TaskTracer | None) -> None:
        """Trace every attempt with ``tracer`` (``None`` turns tracing off).

        Raises:
            ConfigurationError: ``tracer`` lacks ``start`` or ``inject``.
        """
        if tracer is not None and not isinstance(tracer, TaskTracer):
            raise ConfigurationError("tracer must implement TaskTracer (start(task, ctx) and inject(metadata))")
        self._tracer = tracer
        self._refresh_fast_path()

    def add_instrumentation(self, instrumentation: object) -> None:
        """Receive task events (see :class:`~worker_core.protocols.Instrumentation`); worker-otel uses it."""
        if instrumentation not in self._instrumentations:
            self._instrumentations.append(instrumentation)
        self._rebuild_instrumentation()

    def remove_instrumentation(self, instrumentation: object) -> None:
        """Stop sending events to ``instrumentation``; unknown objects are ignored."""
        if instrumentation in self._instrumentations:
            self._instrumentations.remove(instrumentation)
        self._rebuild_instrumentation()

    def _rebuild_instrumentation(self) -> None:
        def bound(event: str) -> tuple[Any, ...]:
            return tuple(f for i in self._instrumentations if callable(f := getattr(i, event, None)))

        self._i_scheduled = bound("on_scheduled")
        self._i_start = bound("on_start")
        self._i_finish = bound("on_finish")
        self._i_retry = bound("on_retry")
        self._i_dropped = bound("on_result_dropped")
        self._refresh_fast_path()

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of the counters."""
        return MetricsSnapshot(
            scheduled=self._n_scheduled,
            running=self._n_running,
            completed=self._n_completed,
            failed=self._n_failed,
            cancelled=self._n_cancelled,
            retried=self._n_retried,
            results_dropped=self._n_dropped,
            queue_depth=self._ready.size + self._delayed.size,
            latency_count=self._lat_count,
            latency_total=self._lat_total,
            latency_max=self._lat_max,
        )

    def queue_depths(self) -> dict[str, int]:
        """Ready tasks per queue (delayed tasks not included)."""
        return self._ready.depths()


def _completed_at(task: Task) -> float:
    return task._completed_mono
