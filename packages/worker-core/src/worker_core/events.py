"""One lifecycle pipeline for task events: hooks, instrumentation and the tracer are adapters over it.

The runtime reports each event once, here: a task scheduled, an attempt starting, a retry scheduled, a
task finished, results dropped; and it asks here for the span of an attempt. Which listeners exist is
decided when they change (``set_hooks``, ``set_tracer``, ``add_instrumentation``), not per task: the
``has_*`` flags let the hot path skip an event nobody listens to. Every callback runs guarded
(:func:`~worker_core.hooks.call_guarded`): what a listener raises is logged and never changes a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, final

from .errors import ConfigurationError
from .hooks import TaskHooks, call_guarded
from .protocols import TaskTracer

if TYPE_CHECKING:
    from .protocols import TaskSpan
    from .status import TaskStatus
    from .task import Task, TaskContext

__all__ = ("EventPipeline",)

logger = logging.getLogger("worker_core.manager")

Pending = Coroutine[Any, Any, None] | None


@final
class EventPipeline:
    """Fans task events out to the hooks, the instrumentation objects and the tracer."""

    __slots__ = (
        "_dropped",
        "_finish",
        "_instrumentations",
        "_retry",
        "_schedule_tick",
        "_scheduled",
        "_start",
        "has_finish",
        "has_retry",
        "has_scheduled",
        "has_start",
        "hooks",
        "tracer",
    )

    def __init__(self) -> None:
        self.hooks: TaskHooks | None = None
        self.tracer: TaskTracer | None = None
        self._instrumentations: list[object] = []
        self._scheduled: tuple[Callable[..., Any], ...] = ()
        self._start: tuple[Callable[..., Any], ...] = ()
        self._finish: tuple[Callable[..., Any], ...] = ()
        self._retry: tuple[Callable[..., Any], ...] = ()
        self._dropped: tuple[Callable[..., Any], ...] = ()
        self._schedule_tick: tuple[Callable[..., Any], ...] = ()
        self.has_scheduled = self.has_start = self.has_finish = self.has_retry = False

    # ------------------------------------------------------------------------------------------ listeners

    def set_hooks(self, hooks: TaskHooks | None) -> None:
        """Call ``hooks`` from now on (``None``: none).

        Raises:
            ConfigurationError: ``hooks`` is not a :class:`TaskHooks`.
        """
        if hooks is not None and not isinstance(hooks, TaskHooks):
            raise ConfigurationError(f"hooks must be a TaskHooks, got {hooks!r}")
        self.hooks = hooks
        self._refresh()

    def set_tracer(self, tracer: TaskTracer | None) -> None:
        """Trace attempts with ``tracer`` from now on (``None``: untraced).

        Raises:
            ConfigurationError: ``tracer`` lacks ``start`` or ``inject``.
        """
        if tracer is not None and not isinstance(tracer, TaskTracer):
            raise ConfigurationError("tracer must implement TaskTracer (start(task, ctx) and inject(metadata))")
        self.tracer = tracer

    def add_instrumentation(self, instrumentation: object) -> None:
        """Send events to ``instrumentation`` too (once, however often it is added)."""
        if instrumentation not in self._instrumentations:
            self._instrumentations.append(instrumentation)
        self._refresh()

    def remove_instrumentation(self, instrumentation: object) -> None:
        """Stop sending events to ``instrumentation``."""
        if instrumentation in self._instrumentations:
            self._instrumentations.remove(instrumentation)
        self._refresh()

    def _refresh(self) -> None:
        def bound(event: str) -> tuple[Callable[..., Any], ...]:
            return tuple(f for i in self._instrumentations if callable(f := getattr(i, event, None)))

        self._scheduled = bound("on_scheduled")
        self._start = bound("on_start")
        self._finish = bound("on_finish")
        self._retry = bound("on_retry")
        self._dropped = bound("on_result_dropped")
        self._schedule_tick = bound("on_schedule_tick")
        hooks = self.hooks or TaskHooks()
        self.has_scheduled = bool(self._scheduled) or hooks.on_queued is not None
        self.has_start = bool(self._start) or hooks.on_start is not None
        self.has_finish = bool(self._finish) or hooks.on_finish is not None
        self.has_retry = bool(self._retry) or hooks.on_retry is not None

    # ---------------------------------------------------------------------------------------------- events

    def scheduled(self, task: Task[Any]) -> Pending:
        """A task was accepted by ``register_task``; its ``on_queued`` hook, if async."""
        for callback in self._scheduled:
            _notify(callback, task)
        hooks = self.hooks
        if hooks is not None and hooks.on_queued is not None:
            return call_guarded("task hook on_queued", hooks.on_queued, task)
        return None

    def stored(self, record: object) -> None:
        """A durable task record was stored by the backend (instrumentation only: no hook runs for it)."""
        for callback in self._scheduled:
            _notify(callback, record)

    def starting(self, task: Task[Any]) -> Pending:
        """An attempt is about to run; its ``on_start`` hook, if async."""
        for callback in self._start:
            _notify(callback, task)
        hooks = self.hooks
        if hooks is not None and hooks.on_start is not None:
            return call_guarded("task hook on_start", hooks.on_start, task)
        return None

    def retrying(self, task: Task[Any], delay_s: float, attempt: int) -> Pending:
        """A retry was scheduled; its ``on_retry`` hook, if async."""
        for callback in self._retry:
            _notify(callback, task, delay_s, attempt)
        hooks = self.hooks
        if hooks is not None and hooks.on_retry is not None:
            return call_guarded("task hook on_retry", hooks.on_retry, task, delay_s, attempt)
        return None

    def finished(
        self, task: Task[Any], status: TaskStatus, result: Any, error: BaseException | None, latency_s: float | None
    ) -> Pending:
        """A task reached its terminal status; its ``on_finish`` hook, if async."""
        for callback in self._finish:
            _notify(callback, task, status, latency_s)
        hooks = self.hooks
        if hooks is not None and hooks.on_finish is not None:
            return call_guarded("task hook on_finish", hooks.on_finish, task, status, result, error)
        return None

    def dropped(self, count: int) -> None:
        """``count`` results were lost to full subscriber buffers."""
        for callback in self._dropped:
            _notify(callback, count)

    def schedule_tick(self, schedule: str, outcome: str) -> None:
        """A schedule's tick was fired or skipped on this node (instrumentation only).

        ``outcome``: ``"fired"``, or ``"paused"``, ``"not_accepting"``, ``"failed"``, ``"duplicate"`` (another
        node fired it), ``"late"``.
        """
        for callback in self._schedule_tick:
            _notify(callback, schedule, outcome)

    # ---------------------------------------------------------------------------------------------- tracer

    def inject(self, metadata: dict[str, str] | None) -> dict[str, str] | None:
        """The metadata to store with a new task: a copy of ``metadata`` with the tracer's context added.

        The caller's dict is never changed. Without a tracer, ``metadata`` itself.
        """
        tracer = self.tracer
        if tracer is None:
            return metadata
        carrier = dict(metadata) if metadata else {}
        try:
            tracer.inject(carrier)
        except BaseException:
            logger.warning("tracer inject raised; ignored", exc_info=True)
        return carrier

    def open_span(self, task: Task[Any], ctx: TaskContext) -> TaskSpan | None:
        """The span of this attempt (in the attempt's own context), or ``None`` when the tracer failed."""
        tracer = self.tracer
        if tracer is None:
            return None
        try:
            return tracer.start(task, ctx)
        except BaseException:
            logger.warning("tracer start raised; attempt of task %s runs untraced", task.id, exc_info=True)
            return None

    @staticmethod
    def close_span(span: TaskSpan, error: BaseException | None) -> None:
        """End an attempt's span with its error (``None`` on success)."""
        try:
            span.end(error)
        except BaseException:
            logger.warning("tracer span end raised; ignored", exc_info=True)


def _notify(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except BaseException:
        logger.exception("instrumentation callback %r raised; ignored", callback)
