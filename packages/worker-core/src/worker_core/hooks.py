"""Lifecycle hooks a user sets on a manager (go-worker's TaskHooks), and the guard every user callback runs in."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from .status import TaskStatus
    from .task import Task

__all__ = ("TaskHooks", "call_guarded")

logger = logging.getLogger(__name__)

_MaybeAwaitable = Awaitable[None] | None


@final
@dataclass(frozen=True, slots=True)
class TaskHooks:
    """Callbacks for task lifecycle events; each may be a plain or an ``async`` function, or ``None``.

    Whatever a hook raises (``BaseException`` included) is logged and never reaches the task, the caller or
    the manager; a hook never changes a task's outcome.

    Attributes:
        on_queued: ``(task)`` after a successful ``register_task`` (not on retries).
        on_start: ``(task)`` right before every attempt.
        on_finish: ``(task, status, result, error)`` once, when the task reaches a terminal status
            (after its result is published, before ``wait()`` returns).
        on_retry: ``(task, delay_seconds, attempt)`` when a retry is scheduled.
    """

    on_queued: Callable[[Task[Any]], _MaybeAwaitable] | None = None
    on_start: Callable[[Task[Any]], _MaybeAwaitable] | None = None
    on_finish: Callable[[Task[Any], TaskStatus, Any, BaseException | None], _MaybeAwaitable] | None = None
    on_retry: Callable[[Task[Any], float, int], _MaybeAwaitable] | None = None


def call_guarded(name: str, fn: Callable[..., Any], *args: Any) -> Coroutine[Any, Any, None] | None:
    """Call a user callback; ``None`` when it is done, else a coroutine that awaits what it returned.

    Either way nothing it raises escapes (it is logged), except a cancellation of the awaiting task itself
    (``asyncio.current_task().cancelling()``), which propagates.
    """
    try:
        outcome = fn(*args)
    except BaseException:
        logger.exception("%s raised; ignored", name)
        return None
    if outcome is None or not inspect.isawaitable(outcome):
        return None
    return _await_guarded(name, outcome)


async def _await_guarded(name: str, awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except GeneratorExit:
        raise  # closed (the manager is going away): let the coroutine close
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise  # a real cancellation of whoever awaits the hook
        logger.exception("%s raised CancelledError on its own; ignored", name)
    except BaseException:
        logger.exception("%s raised; ignored", name)
