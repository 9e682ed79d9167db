"""The running attempt's context, from anywhere inside a task's code."""

from __future__ import annotations

from .errors import NotInTaskError
from .task import TaskContext  # first: it loads the attempt runner in the order the package needs

from ._runtime.attempt import CURRENT_CONTEXT  # isort: skip

__all__ = ("current_context",)


def current_context() -> TaskContext:
    """The :class:`~worker_core.TaskContext` of the attempt whose code calls this.

    Its task, attempt number, deadline and cancel flag, without a ``ctx`` parameter. Works in an ``async def``
    task, in the asyncio tasks it starts (they inherit its context), and in a plain function running in the
    manager's thread pool.

    Raises:
        NotInTaskError: called outside the code of a running task.
    """
    try:
        return CURRENT_CONTEXT.get()
    except LookupError:
        raise NotInTaskError("current_context() was called outside a running task") from None
