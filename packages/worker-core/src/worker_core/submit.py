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
from datetime import datetime, timedelta
from inspect import CO_COROUTINE as _CO_COROUTINE
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, TypeVar, Unpack, final, overload

from . import task as records
from ._calls import GENERATOR_FLAGS, Call, generator_refusal, is_coroutine_callable
from .errors import InvalidTaskError
from .options import start_at
from .task import Task, TaskFields

if TYPE_CHECKING:
    from .durable.types import DurableTask
    from .events import Pending
    from .handles import TaskHandle

__all__ = (
    "NO_OPTIONS",
    "Recipe",
    "SubmitOptions",
    "Submitter",
    "TaskDefinition",
    "build_task",
    "define_task",
    "scheduled",
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SubmitOptions(TaskFields, total=False):
    """The options of one submitted task: :class:`~worker_core.Task`'s fields, and ``delay``.

    ``delay`` is seconds or a ``timedelta`` before the first start (not with ``run_at``).
    """

    delay: float | timedelta | None


_OPTION_NAMES: frozenset[str] = frozenset(SubmitOptions.__annotations__) | frozenset(TaskFields.__annotations__)


def checked_options(options: SubmitOptions, where: str) -> Recipe:
    """``options``, checked and prepared for building tasks.

    Raises:
        TypeError: an unknown option name.
        InvalidTaskError: a value of the wrong type or range, or both ``run_at`` and ``delay``.
    """
    unknown = options.keys() - _OPTION_NAMES
    if unknown:
        raise TypeError(f"{where}: unknown task option(s): {', '.join(sorted(unknown))}")
    recipe = Recipe(options)
    recipe.build(_probe, (), {})  # the same checks a real task gets, now rather than at submit
    return recipe


def _probe() -> None:
    return None


@final
class Recipe:
    """Options prepared once for many tasks: ``Task``'s keyword arguments, the delay, the name if given."""

    __slots__ = ("delay", "fields", "name", "options")

    def __init__(self, options: SubmitOptions) -> None:
        fields: dict[str, Any] = dict(options)
        self.options = options
        self.delay = fields.pop("delay", None)
        self.name: str | None = fields.pop("name", None) or None
        if self.delay is not None and fields.get("run_at") is not None:
            raise InvalidTaskError("give run_at or delay, not both")
        self.fields = fields

    def over(self, base: Recipe) -> Recipe:
        """These options over ``base``'s."""
        if base is NO_OPTIONS:
            return self
        if self is NO_OPTIONS:
            return base
        return Recipe({**base.options, **self.options})

    def build(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task[Any]:
        """The task that runs ``fn(*args, **kwargs)`` with these options.

        Raises:
            InvalidTaskError: ``fn`` is not callable, or an option is invalid.
        """
        execute: Callable[..., Any]
        if type(fn) is FunctionType and not fn.__code__.co_flags & GENERATOR_FLAGS:  # the usual case, inline
            is_async = bool(fn.__code__.co_flags & _CO_COROUTINE)
            name = self.name or fn.__qualname__
        else:
            if not callable(fn):
                raise InvalidTaskError(f"submit needs a callable, got {type(fn).__name__}")
            refusal = generator_refusal(fn, "the submitted function")
            if refusal is not None:
                raise InvalidTaskError(refusal)
            is_async = is_coroutine_callable(fn)
            name = self.name or _name_of(fn)
        # An async def runs as itself with the arguments kept on its task (records.call_with); a plain function
        # through a Call, the one-argument callable a thread or a pool process takes.
        execute = fn if is_async else Call(fn, args, kwargs)
        fields = self.fields
        metadata = fields.get("metadata")
        if metadata:  # each task its own copy: one task's changes are never another's
            fields = {**fields, "metadata": dict(metadata)}
        try:
            if self.delay is None:
                task: Task[Any] = Task(execute, name=name, **fields)
            else:
                task = Task(execute, name=name, run_at=start_at(delay=self.delay), **fields)
        except TypeError as exc:  # a caller that bypassed the typed options with a name Task does not take
            raise InvalidTaskError(str(exc)) from None
        if is_async:
            records.call_with(task, args, kwargs)
        return task


NO_OPTIONS: Final = Recipe({})


def build_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], recipe: Recipe) -> Task[Any]:
    """The task that runs ``fn(*args, **kwargs)``: ``recipe``'s options over those ``fn`` was declared with.

    Raises:
        InvalidTaskError: ``fn`` is not callable, or an option is invalid.
    """
    if type(fn) is TaskDefinition:
        return recipe.over(fn.recipe).build(fn.fn, args, kwargs)
    return recipe.build(fn, args, kwargs)


@final
class TaskDefinition(Generic[P, R]):
    """A function declared as a task with its defaults (see :func:`define_task`).

    Calling it calls the function itself (a test, or a direct call, runs no task); ``tm.submit(definition,
    *args, **kwargs)`` runs it as a task with the declared options.
    """

    __slots__ = ("__dict__", "fn", "recipe")

    __name__: str
    __qualname__: str

    def __init__(self, fn: Callable[P, R], recipe: Recipe) -> None:
        if not callable(fn):
            raise InvalidTaskError(f"a task definition needs a callable, got {type(fn).__name__}")
        refusal = generator_refusal(fn, "the task function")
        if refusal is not None:
            raise InvalidTaskError(refusal)
        self.fn = fn
        self.recipe = recipe
        # What functools.update_wrapper would copy, for introspection and logs.
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            value = getattr(fn, name, None)
            if value is not None:
                self.__dict__[name] = value

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function itself (no task)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TaskDefinition({getattr(self.fn, '__qualname__', self.fn)!r}, {self.recipe.options!r})"


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


def _name_of(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


@final
class Submitter:
    """``tm.with_options(...)``: submits tasks with these options (see the module docs for the order)."""

    __slots__ = ("_handle", "_recipe", "_register")

    def __init__(
        self,
        register: Callable[[Task[Any]], Pending],
        handle: Callable[[Task[Any]], TaskHandle[Any]],
        recipe: Recipe,
    ) -> None:
        self._register = register  # the manager's registration up to its hook: what is left to await, if anything
        self._handle = handle
        self._recipe = recipe

    def with_options(self, **options: Unpack[SubmitOptions]) -> Submitter:
        """A submitter with ``options`` over these ones.

        Raises:
            TypeError: an unknown option name.
            InvalidTaskError: an option value of the wrong type or range.
        """
        merged: SubmitOptions = {**self._recipe.options, **options}
        return Submitter(self._register, self._handle, checked_options(merged, "with_options"))

    @overload
    async def submit(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    @overload
    async def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[T]: ...

    async def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[Any]:
        """Run ``fn(*args, **kwargs)`` as a task with these options; its handle (see ``TaskManager.submit``)."""
        task = build_task(fn, args, kwargs, self._recipe)
        pending = self._register(task)  # as TaskManager.submit: no coroutine of its own per task
        if pending is not None:
            await pending
        return self._handle(task)


AnyTask = TypeVar("AnyTask", "Task[Any]", "DurableTask")


def scheduled(task: AnyTask, kind: type[AnyTask], run_at: datetime | None, *, keep: bool = False) -> AnyTask:
    """``task`` with ``run_at`` set, for ``register_*_at`` / ``_after`` (``keep``: ``None`` keeps the task's own).

    Raises:
        InvalidTaskError: ``task`` is not a ``kind``.
    """
    if not isinstance(task, kind):
        raise InvalidTaskError(f"expected a {kind.__name__}, got {type(task).__name__}")
    if run_at is not None or not keep:
        task.run_at = run_at
    return task
