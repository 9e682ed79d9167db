"""What a submitted task runs: ``fn(*args, **kwargs)``, ignoring the attempt's ``ctx``.

One object per task (a closure would be a function and three cells, each tracked by the garbage collector),
and a type :func:`worker_core.task.is_coroutine_callable` knows without asking ``inspect``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, final

__all__ = ("AsyncCall", "Call")


@final
class AsyncCall:
    """``await fn(*args, **kwargs)`` as a task's ``execute(ctx)``."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    async def __call__(self, ctx: object) -> Any:
        return await self.fn(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"AsyncCall({getattr(self.fn, '__qualname__', self.fn)!r})"


@final
class Call:
    """``fn(*args, **kwargs)`` as a plain task's ``execute(ctx)`` (it runs in the thread pool)."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def __call__(self, ctx: object) -> Any:
        return self.fn(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"Call({getattr(self.fn, '__qualname__', self.fn)!r})"
