"""Lifecycle hooks a user sets on a manager (go-worker's TaskHooks)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from .status import TaskStatus
    from .task import Task

__all__ = ("TaskHooks",)

logger = logging.getLogger(__name__)

_MaybeAwaitable = Awaitable[None] | None


@final
@dataclass(frozen=True, slots=True)
class TaskHooks:
    """Callbacks for task lifecycle events; each may be a plain or an ``async`` function, or ``None``.

    An exception raised inside a hook is logged and never reaches the task or the caller.

    Attributes:
        on_queued: ``(task)`` after a successful ``register_task`` (not on retries).
        on_start: ``(task)`` right before every attempt.
        on_finish: ``(task, status, result, error)`` once, when the task reaches a terminal status
            (after its result is published, before ``wait()`` returns).
        on_retry: ``(task, delay_seconds, attempt)`` when a retry is scheduled.
    """

    on_queued: Callable[[Task], _MaybeAwaitable] | None = None
    on_start: Callable[[Task], _MaybeAwaitable] | None = None
    on_finish: Callable[[Task, TaskStatus, Any, BaseException | None], _MaybeAwaitable] | None = None
    on_retry: Callable[[Task, float, int], _MaybeAwaitable] | None = None


async def call_hook(name: str, hook: Callable[..., Any], *args: Any) -> None:
    """Call ``hook(*args)``, awaiting it when it returns an awaitable; log (never raise) its errors."""
    try:
        outcome = hook(*args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        logger.exception("task hook %s raised; ignored", name)
