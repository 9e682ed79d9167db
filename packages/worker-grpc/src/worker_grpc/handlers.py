"""Handlers: what runs a task registered over gRPC, keyed by the task's ``name``.

A :class:`HandlerSpec` pairs ``make`` (returns an empty payload message: the type the ``Any`` payload is
unpacked into) with ``fn(ctx, payload)``, an ``async def`` or a plain function (run in the manager's
thread pool) whose return value is the task's result. :class:`HandlerRegistry` builds specs from typed
functions: the payload type is the annotation of the function's second parameter.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeGuard, TypeVar, final

from google.protobuf.message import Message
from worker_core.errors import HandlerPayloadTypeError, HandlerRegistrationError

__all__ = ("HandlerRegistry", "HandlerSpec", "HandlerSpecLike", "Handlers", "resolve_handlers")

PayloadT = TypeVar("PayloadT", bound=Message)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class HandlerSpec(Generic[PayloadT]):
    """go-worker's HandlerSpec: ``make()`` returns an empty payload message, ``fn(ctx, payload)`` runs the task.

    ``ctx`` is the :class:`worker_core.TaskContext` of the attempt; ``payload`` is the unpacked message,
    or ``None`` when the request carried no payload (allowed for in-memory tasks, as in go-worker).
    """

    make: Callable[[], PayloadT]
    fn: Callable[[Any, PayloadT | None], Any]


class HandlerSpecLike(Protocol):
    """Anything with ``make`` and ``fn``: a :class:`HandlerSpec`, or worker-core's ``DurableHandlerSpec``.

    A spec whose ``make`` is ``None`` but whose ``payload_type`` is a protobuf message class decodes into
    that class, so one ``worker_core.durable.TypedDurableRegistry`` can serve both the manager's
    ``durable_handlers`` and :func:`~worker_grpc.serve`.
    """

    @property
    def make(self) -> Callable[[], Any] | None:
        """Returns an empty payload message."""
        ...

    @property
    def fn(self) -> Callable[..., Any]:
        """Runs the task: ``fn(ctx, payload)``."""
        ...


class _HasHandlers(Protocol):
    def handlers(self) -> Mapping[str, HandlerSpecLike]: ...


#: What the servicer accepts: a mapping of names to specs, or a registry with a ``handlers()`` method.
Handlers = Mapping[str, HandlerSpecLike] | _HasHandlers


@final
class HandlerRegistry:
    """Typed handlers: ``@registry.handler("create_user")`` on ``async def f(ctx, p: CreateUserPayload)``.

    The decorated function is called with a payload of exactly its annotated type (an empty one when the
    request carried none, unless the annotation allows ``None``); any other type raises
    :class:`~worker_core.errors.HandlerPayloadTypeError`. A duplicate or empty name raises
    :class:`~worker_core.errors.HandlerRegistrationError`.
    """

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec[Any]] = {}
        # name -> (the user's function, whether it accepts None): the servicer unpacks payloads into exactly
        # the registered type, so it calls these directly, without the type-checking wrapper.
        self._direct: dict[str, tuple[Callable[..., Any], bool]] = {}

    def handler(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name``; the payload type comes from its annotation."""

        def register(fn: F) -> F:
            payload_type, optional = _payload_annotation(fn)
            self._add(name, payload_type, fn, optional=optional)
            return fn

        return register

    def add(self, name: str, payload_type: type[PayloadT], fn: Callable[[Any, PayloadT], Any]) -> None:
        """Register ``fn`` under ``name`` for payloads of ``payload_type``."""
        self._add(name, payload_type, fn, optional=False)

    def handlers(self) -> dict[str, HandlerSpec[Any]]:
        """A copy of the name -> spec mapping, for :class:`~worker_grpc.WorkerServiceServicer`."""
        return dict(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def _add(self, name: str, payload_type: type[Message], fn: Callable[..., Any], *, optional: bool) -> None:
        if not name or not name.strip():
            raise HandlerRegistrationError("handler name is required")
        if name in self._specs:
            raise HandlerRegistrationError(f"handler {name!r} is already registered")
        if not _is_message_class(payload_type):
            raise HandlerRegistrationError(f"handler {name!r}: payload type must be a protobuf message class")
        if not callable(fn):
            raise HandlerRegistrationError(f"handler {name!r}: fn is not callable")
        self._specs[name] = HandlerSpec(payload_type, _typed(name, payload_type, fn, optional=optional))
        self._direct[name] = (fn, optional)


def _payload_annotation(fn: Callable[..., Any]) -> tuple[type[Message], bool]:
    params = list(inspect.signature(fn).parameters.values())
    name = getattr(fn, "__qualname__", repr(fn))
    if len(params) < 2:
        raise HandlerRegistrationError(f"{name} must take (ctx, payload)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # an annotation that does not resolve: say which function
        raise HandlerRegistrationError(f"cannot resolve the annotations of {name}: {exc}") from exc
    annotation = hints.get(params[1].name)
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else None
    if not _is_message_class(annotation):
        raise HandlerRegistrationError(f"{name}: annotate the payload parameter with a protobuf message class")
    return annotation, optional


def _is_message_class(value: object) -> TypeGuard[type[Message]]:
    return isinstance(value, type) and issubclass(value, Message)


def _typed(name: str, payload_type: type[Message], fn: Callable[..., Any], *, optional: bool) -> Callable[..., Any]:
    def check(payload: Message | None) -> Message | None:
        if payload is None:
            return None if optional else payload_type()
        if type(payload) is not payload_type:
            raise HandlerPayloadTypeError(
                f"handler {name!r} expects {payload_type.DESCRIPTOR.full_name}, got {type(payload).__name__}"
            )
        return payload

    if _is_async(fn):

        @functools.wraps(fn)
        async def run_async(ctx: Any, payload: Message | None) -> Any:
            return await fn(ctx, check(payload))

        return run_async

    @functools.wraps(fn)
    def run(ctx: Any, payload: Message | None) -> Any:
        return fn(ctx, check(payload))

    return run


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


@dataclass(frozen=True, slots=True)
class _Resolved:
    """A handler prepared once for the hot path.

    It holds the payload's full name, whether ``fn`` is a coroutine function, and whether a missing payload
    is passed as an empty message (typed handlers) rather than ``None``.
    """

    name: str
    make: Callable[[], Message]
    fn: Callable[..., Any]
    full_name: str
    is_async: bool
    empty_if_missing: bool = False


def resolve_handlers(handlers: Handlers) -> dict[str, _Resolved]:
    """Check every spec once and precompute what the hot path needs."""
    specs = handlers.handlers() if hasattr(handlers, "handlers") else handlers
    if not isinstance(specs, Mapping):
        raise HandlerRegistrationError("handlers must be a mapping of name -> HandlerSpec or a HandlerRegistry")
    resolved: dict[str, _Resolved] = {}
    for name, spec in specs.items():
        make, fn = getattr(spec, "make", None), getattr(spec, "fn", None)
        declared = getattr(spec, "payload_type", None)
        if make is None and _is_message_class(declared):
            make = declared  # worker-core's DurableHandlerSpec may give only the type
        if not callable(make) or not callable(fn):
            raise HandlerRegistrationError(f"handler {name!r}: make and fn must be callable")
        sample = make()
        if not isinstance(sample, Message):
            raise HandlerRegistrationError(f"handler {name!r}: make() must return a protobuf message")
        resolved[name] = _Resolved(name, make, fn, sample.DESCRIPTOR.full_name, _is_async(fn))
    if isinstance(handlers, HandlerRegistry):
        for name, (fn, optional) in handlers._direct.items():
            spec = resolved[name]
            resolved[name] = _Resolved(name, spec.make, fn, spec.full_name, _is_async(fn), not optional)
    return resolved
