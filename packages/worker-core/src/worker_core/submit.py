"""Running a function with its own arguments as a task: ``submit``, per-call options and task definitions.

``await tm.submit(fn, *args, **kwargs)`` runs ``fn(*args, **kwargs)``: an ``async def`` in its own asyncio
task, a plain function in the manager's thread pool. The function takes no ``ctx``; it reads the attempt's
context with :func:`worker_core.current_context` when it needs it. Options for the task (priority, queue,
retries, timeout, ...) never travel in ``kwargs``, which belong to ``fn`` alone; they come from

- a :func:`define_task` declaration (the function's defaults, given once), then
- ``tm.with_options(...)`` (this call's options, over the declaration's), then
- the manager's own defaults for whatever neither gives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, Unpack, final, overload

from .errors import InvalidTaskError
from .options import start_at
from .task import Task, TaskFields, is_coroutine_callable

if TYPE_CHECKING:
    from .handles import TaskHandle

__all__ = ("SubmitOptions", "Submitter", "TaskDefinition", "build_task", "define_task")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SubmitOptions(TaskFields, total=False):
    """The options of one submitted task: :class:`~worker_core.Task`'s fields, and ``delay``.

    ``delay`` is seconds or a ``timedelta`` before the first start (not with ``run_at``).
    """

    delay: float | timedelta | None


_OPTION_NAMES: frozenset[str] = frozenset(SubmitOptions.__annotations__) | frozenset(TaskFields.__annotations__)


def checked_options(options: SubmitOptions, where: str) -> SubmitOptions:
    """``options`` if every name is a known option and the values make a valid task.

    Raises:
        TypeError: an unknown option name.
        InvalidTaskError: a value of the wrong type or range.
    """
    unknown = options.keys() - _OPTION_NAMES
    if unknown:
        raise TypeError(f"{where}: unknown task option(s): {', '.join(sorted(unknown))}")
    build_task(_probe, (), {}, options)  # the same checks a real task gets, now rather than at submit
    return options


def _probe() -> None:
    return None


@final
class TaskDefinition(Generic[P, R]):
    """A function declared as a task with its defaults (see :func:`define_task`).

    Calling it calls the function itself (a test, or a direct call, runs no task); ``tm.submit(definition,
    *args, **kwargs)`` runs it as a task with the declared options.
    """

    __slots__ = ("__dict__", "fn", "options")

    __name__: str
    __qualname__: str

    def __init__(self, fn: Callable[P, R], options: SubmitOptions) -> None:
        if not callable(fn):
            raise InvalidTaskError(f"a task definition needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.options = options
        # What functools.update_wrapper would copy, for introspection and logs.
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(fn, name, None)
            if value is not None:
                self.__dict__[name] = value

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself (no task)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TaskDefinition({getattr(self.fn, '__qualname__', self.fn)!r}, {self.options!r})"


@overload
def define_task(fn: Callable[P, R], /) -> TaskDefinition[P, R]: ...


@overload
def define_task(**options: Unpack[SubmitOptions]) -> Callable[[Callable[P, R]], TaskDefinition[P, R]]: ...


def define_task(
    fn: Callable[..., Any] | None = None, /, **options: Unpack[SubmitOptions]
) -> TaskDefinition[..., Any] | Callable[[Callable[..., Any]], TaskDefinition[..., Any]]:
    """Declare a function as a task, with its defaults: ``@define_task`` or ``@define_task(retries=3, ...)``.

    The options are :class:`SubmitOptions` (``priority``, ``queue``, ``retries``, ``timeout``, ...); they are
    checked here, so a wrong one fails at import rather than at the first submit.

    Raises:
        TypeError: an unknown option name.
        InvalidTaskError: an option value of the wrong type or range, or ``fn`` is not callable.
    """
    checked = checked_options(options, "define_task")
    if fn is not None:
        return TaskDefinition(fn, checked)

    def declare(fn: Callable[..., Any]) -> TaskDefinition[..., Any]:
        return TaskDefinition(fn, checked)

    return declare


def build_task(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: SubmitOptions
) -> Task[Any]:
    """The task that runs ``fn(*args, **kwargs)`` with ``options`` over ``fn``'s declared ones.

    Raises:
        InvalidTaskError: an option is invalid, or ``run_at`` and ``delay`` are both given.
    """
    if isinstance(fn, TaskDefinition):
        declared: SubmitOptions = fn.options
        fn = fn.fn
        if declared:
            options = {**declared, **options} if options else declared
    if not callable(fn):
        raise InvalidTaskError(f"submit needs a callable, got {type(fn).__name__}")
    execute = _async_call(fn, args, kwargs) if is_coroutine_callable(fn) else _call(fn, args, kwargs)
    target = fn
    if not options:
        return Task(execute, name=_name_of(target))
    fields: dict[str, Any] = dict(options)
    delay = fields.pop("delay", None)
    if delay is not None:
        if fields.get("run_at") is not None:
            raise InvalidTaskError("give run_at or delay, not both")
        fields["run_at"] = start_at(delay=delay)
    if not fields.get("name"):
        fields["name"] = _name_of(target)
    try:
        return Task(execute, **fields)
    except TypeError as exc:  # a caller that bypassed the typed options with a name Task does not take
        raise InvalidTaskError(str(exc)) from None


def _async_call(
    fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Callable[[object], Awaitable[Any]]:
    async def execute(ctx: object) -> Any:
        return await fn(*args, **kwargs)

    return execute


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[object], Any]:
    def execute(ctx: object) -> Any:
        return fn(*args, **kwargs)

    return execute


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


@final
class Submitter:
    """``tm.with_options(...)``: submits tasks with these options (see the module docs for the order)."""

    __slots__ = ("_options", "_register")

    def __init__(self, register: Callable[[Task[Any]], Awaitable[TaskHandle[Any]]], options: SubmitOptions) -> None:
        self._register = register
        self._options = options

    def with_options(self, **options: Unpack[SubmitOptions]) -> Submitter:
        """A submitter with ``options`` over these ones.

        Raises:
            TypeError: an unknown option name.
            InvalidTaskError: an option value of the wrong type or range.
        """
        merged: SubmitOptions = {**self._options, **options}
        return Submitter(self._register, checked_options(merged, "with_options"))

    @overload
    async def submit(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    @overload
    async def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    async def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[Any]:
        """Run ``fn(*args, **kwargs)`` as a task with these options; its handle (see ``TaskManager.submit``)."""
        return await self._register(build_task(fn, args, kwargs, self._options))
