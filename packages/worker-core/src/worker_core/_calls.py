"""What a submitted plain function runs: ``fn(*args, **kwargs)``, ignoring the attempt's ``ctx``.

A submitted ``async def`` needs no such object: its task keeps the arguments (``worker_core.task.call_with``)
and the attempt calls ``fn(*args, **kwargs)`` itself, one object less per task for the garbage collector to
count. A plain function runs in a thread or a pool process, which take one callable of one argument (and a
pool process pickles it): :class:`Call` is that callable, one object per task (a closure would be a function
and three cells, each tracked by the garbage collector). A call with no keyword arguments keeps one shared
empty mapping rather than its own empty dict.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import Any, Final, final

__all__ = ("GENERATOR_FLAGS", "NO_KWARGS", "Call", "generator_refusal", "is_coroutine_callable")

_CO_COROUTINE: Final = inspect.CO_COROUTINE
#: The keyword arguments of every call that has none (never changed: ``**`` unpacking copies it).
NO_KWARGS: Final[dict[str, Any]] = {}
#: Code flags of a function whose call only makes a generator (its body runs when someone iterates it).
GENERATOR_FLAGS: Final = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


@final
class Call:
    """``fn(*args, **kwargs)`` as a plain task's ``execute(ctx)`` (it runs in the thread pool)."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs or NO_KWARGS

    def __call__(self, ctx: object) -> Any:
        return self.fn(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"Call({getattr(self.fn, '__qualname__', self.fn)!r})"


def is_coroutine_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (no cache: a cache would keep users' callables alive).

    A plain function, a bound method or a ``functools.partial`` of either is read from its function's code flags
    (what ``inspect`` does, minus its generality): ``submit`` and ``Task`` each ask once per task. Anything else
    (a callable object, say) goes through ``inspect``. A callable that is not detected and returns a coroutine
    all the same is still awaited (see ``Task``).
    """
    func = _function_of(fn)
    if type(func) is FunctionType:
        return bool(func.__code__.co_flags & _CO_COROUTINE)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def generator_refusal(fn: object, what: str) -> str | None:
    """Why ``fn`` cannot run as a task, when calling it only makes a generator (sync or async); else ``None``.

    The task would "complete" with the generator object and its body would never run. Callers raise the message
    as their own error (``InvalidTaskError``, ``HandlerRegistrationError``); ``what`` names ``fn`` in it.
    """
    # The usual cases, a function, a bound method or a partial, read from the code flags (inspect costs ~10 us).
    func = _function_of(fn)
    if type(func) is FunctionType and not func.__code__.co_flags & GENERATOR_FLAGS:
        return None
    kind = _generator_kind(fn)
    if kind is None:
        return None
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return (
        f"{what} is {kind} function ({name}): calling it only makes {kind}, so its body would never run;"
        " make it an async def (or a plain def) that returns what the task produces"
    )


def _function_of(fn: object) -> object:
    """The function under bound methods and ``functools.partial`` wrappers (as ``inspect`` unwraps them)."""
    while True:
        if type(fn) is MethodType:
            fn = fn.__func__
        elif type(fn) is functools.partial:
            fn = fn.func
        else:
            return fn


def _generator_kind(fn: object) -> str | None:
    call = getattr(fn, "__call__", None)  # noqa: B004 - a callable object's own __call__
    if inspect.isasyncgenfunction(fn) or (type(fn) is not FunctionType and inspect.isasyncgenfunction(call)):
        return "an async generator"
    if inspect.isgeneratorfunction(fn) or (type(fn) is not FunctionType and inspect.isgeneratorfunction(call)):
        return "a generator"
    return None
