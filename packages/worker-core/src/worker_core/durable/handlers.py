"""Durable handlers: what runs a durable task, and typed registries that build them from annotated functions.

A :class:`DurableHandlerSpec` is go-worker's ``DurableHandlerSpec{Make, Fn}``: ``make()`` returns an empty
payload object (a protobuf message, a ``msgspec.Struct``, a ``dict``...) that tells the codec what to
decode into, and ``fn(ctx, payload)`` (an ``async def`` or a plain function) runs the task and returns
its result. A ``msgspec.Struct`` with required fields cannot be built empty, so a spec may give
``payload_type`` instead of (or as well as) ``make``.

:class:`TypedDurableRegistry` builds specs from typed functions::

    registry = TypedDurableRegistry()

    @registry.handler("send_email")
    async def send_email(ctx: TaskContext, payload: SendEmail) -> str: ...

    TaskManager(durable_backend="memory://", durable_handlers=registry.handlers())

The payload type is the annotation of the function's second parameter. The registered function is
wrapped so that a payload of another type raises :class:`~worker_core.errors.HandlerPayloadTypeError`
instead of reaching user code. :class:`TypedHandlerRegistry` is the same machinery over any spec type
(worker-grpc builds its gRPC handler specs with it or mirrors it).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, final, overload

from worker_core._calls import generator_refusal
from worker_core.errors import HandlerNotFoundError, HandlerPayloadTypeError, HandlerRegistrationError

from .declare import DurableTaskType

__all__ = ("DurableHandlerSpec", "SpecFactory", "TypedDurableRegistry", "TypedHandlerRegistry", "spec_payload_type")

PayloadT = TypeVar("PayloadT")
SpecT = TypeVar("SpecT")
SpecT_co = TypeVar("SpecT_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Any])
_UnionType = type(int | None)


@dataclass(frozen=True, slots=True)
class DurableHandlerSpec(Generic[PayloadT]):
    """go-worker's DurableHandlerSpec: ``make()`` returns an empty payload, ``fn(ctx, payload)`` runs the task.

    Args:
        make: Returns an empty payload object (a protobuf message for the protobuf codec). ``None`` when
            ``payload_type`` is given or when the payload is untyped plain data.
        fn: ``fn(ctx, payload)``, ``async def`` or plain; its return value is the task's result.
        payload_type: The type the codec decodes into. When omitted it is ``type(make())``, computed once
            here (``make`` is called once at construction). ``None`` with no ``make`` means untyped data.

    Raises:
        HandlerRegistrationError: ``fn`` or ``make`` is not callable, or ``make()`` raised.
    """

    make: Callable[[], PayloadT] | None
    fn: Callable[[Any, PayloadT], Any]
    payload_type: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise HandlerRegistrationError("durable handler spec: fn must be callable")
        refusal = generator_refusal(self.fn, "durable handler spec: fn")
        if refusal is not None:
            raise HandlerRegistrationError(refusal)
        if self.make is not None and not callable(self.make):
            raise HandlerRegistrationError("durable handler spec: make must be callable or None")
        if self.payload_type is None and self.make is not None:
            try:
                sample = self.make()
            except Exception as exc:
                raise HandlerRegistrationError(f"durable handler spec: make() raised {exc!r}") from exc
            if sample is not None:
                # Resolved once so that codecs never call make() just to learn the type.
                object.__setattr__(self, "payload_type", type(sample))


class SpecFactory(Protocol[SpecT_co]):
    """Builds a spec from ``make`` (or ``None``), the wrapped ``fn`` and the declared payload type."""

    def __call__(self, make: Callable[[], Any] | None, fn: Callable[..., Any], *, payload_type: Any) -> SpecT_co:
        """Return the spec that a registry stores under a name."""
        ...


def _durable_spec(
    make: Callable[[], Any] | None, fn: Callable[..., Any], *, payload_type: Any
) -> DurableHandlerSpec[Any]:
    return DurableHandlerSpec(make, fn, payload_type=payload_type)


class TypedHandlerRegistry(Generic[SpecT]):
    """Typed handlers keyed by name, producing specs through ``spec_factory``.

    ``TypedHandlerRegistry()`` produces :class:`DurableHandlerSpec` objects;
    ``TypedHandlerRegistry(spec_factory)`` any other spec type (for example worker-grpc's ``HandlerSpec``),
    where ``spec_factory(make, fn, payload_type=...)`` builds one.

    Raises (from :meth:`handler` and :meth:`add`):
        HandlerRegistrationError: empty or duplicate name, missing or unresolvable annotation, bad ``fn``.
    """

    @overload
    def __init__(self: TypedHandlerRegistry[DurableHandlerSpec[Any]]) -> None: ...

    @overload
    def __init__(self, spec_factory: SpecFactory[SpecT]) -> None: ...

    def __init__(self, spec_factory: SpecFactory[Any] | None = None) -> None:
        self._factory: SpecFactory[Any] = spec_factory if spec_factory is not None else _durable_spec
        self._specs: dict[str, SpecT] = {}
        self._types: dict[str, DurableTaskType[Any]] = {}

    def handler(
        self,
        name: str | DurableTaskType[Any],
        *,
        queue: str = "",
        priority: int = 1,
        weight: int = 1,
        retries: int | None = None,
        retry_delay: float | None = None,
    ) -> Callable[[F], F]:
        """Decorator registering a function under ``name``; its payload type is its second parameter's annotation.

        ``name`` may be a :class:`~worker_core.DurableTaskType` declaration: the function implements it (its
        annotation must be the declared payload type) and the declaration's defaults apply. Otherwise the
        keyword arguments are the handler's enqueue defaults, kept as a declaration (:meth:`task_type`).
        ``Optional[T]`` (``T | None``) lets the function receive ``None``; ``Any`` or ``object`` registers
        an untyped handler (plain data, no check). The decorated function is returned unchanged.
        """

        def register(fn: F) -> F:
            payload_type, optional = _payload_annotation(fn)
            if isinstance(name, DurableTaskType):
                if payload_type is not Any and payload_type is not object and payload_type != name.payload_type:
                    raise HandlerRegistrationError(
                        f"handler {name.name!r}: {getattr(fn, '__qualname__', fn)} takes {payload_type!r}, "
                        f"the declaration says {name.payload_type!r}"
                    )
                declared = name
            else:
                declared = None
                if payload_type is not Any and payload_type is not object and _runtime_type(payload_type):
                    declared = DurableTaskType(
                        name,
                        payload_type,
                        queue=queue,
                        priority=priority,
                        weight=weight,
                        retries=retries,
                        retry_delay=retry_delay,
                    )
            handler_name = name.name if isinstance(name, DurableTaskType) else name
            self._add(handler_name, payload_type, fn, make=None, optional=optional)
            if declared is not None:
                self._types[handler_name] = declared
            return fn

        return register

    def task_type(self, name: str) -> DurableTaskType[Any]:
        """The declaration of handler ``name`` (its payload type and defaults): ``registry.task_type(n).task(p)``.

        Raises:
            HandlerNotFoundError: no typed handler is registered under ``name``.
        """
        declared = self._types.get(name)
        if declared is None:
            raise HandlerNotFoundError(f"no typed handler {name!r} in this registry")
        return declared

    def add(
        self,
        name: str,
        payload_type: Any,
        fn: Callable[[Any, Any], Any],
        make: Callable[[], Any] | None = None,
    ) -> None:
        """Register ``fn`` under ``name`` for payloads of ``payload_type``.

        ``make`` defaults to ``payload_type`` itself when that is a protobuf message class (so the
        protobuf codec can parse into it); give it to build an empty payload another way.
        """
        self._add(name, payload_type, fn, make=make, optional=False)

    def handlers(self) -> dict[str, SpecT]:
        """A copy of the name -> spec mapping (the manager's ``durable_handlers``)."""
        return dict(self._specs)

    def __getitem__(self, name: str) -> SpecT:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def _add(
        self,
        name: str,
        payload_type: Any,
        fn: Callable[..., Any],
        *,
        make: Callable[[], Any] | None,
        optional: bool,
    ) -> None:
        if not _non_blank(name):
            raise HandlerRegistrationError("handler name is required")
        if name in self._specs:
            raise HandlerRegistrationError(f"handler {name!r} is already registered")
        if not callable(fn):
            raise HandlerRegistrationError(f"handler {name!r}: fn is not callable")
        if make is not None and not callable(make):
            raise HandlerRegistrationError(f"handler {name!r}: make is not callable")
        if payload_type is Any or payload_type is object:
            # Untyped: the codec decodes plain data and any payload reaches fn.
            self._specs[name] = self._factory(make, fn, payload_type=None)
            return
        check_type = _runtime_type(payload_type)
        if check_type is None:
            raise HandlerRegistrationError(f"handler {name!r}: payload type must be a class, got {payload_type!r}")
        if make is None and _is_protobuf_class(check_type):
            make = check_type
        wrapped = _typed(name, check_type, fn, optional=optional)
        self._specs[name] = self._factory(make, wrapped, payload_type=payload_type)


@final
class TypedDurableRegistry(TypedHandlerRegistry[DurableHandlerSpec[Any]]):
    """go-worker's typed durable registry: ``@registry.handler("name")`` or ``registry.add(name, T, fn)``.

    ``handlers()`` returns the ``name -> DurableHandlerSpec`` mapping for ``TaskManager(durable_handlers=...)``.
    """

    def __init__(self) -> None:
        super().__init__(_durable_spec)


def _payload_annotation(fn: Callable[..., Any]) -> tuple[Any, bool]:
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise HandlerRegistrationError(f"cannot read the signature of {name}: {exc}") from exc
    if len(params) < 2:
        raise HandlerRegistrationError(f"{name} must take (ctx, payload)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # an annotation that does not resolve: say which function
        raise HandlerRegistrationError(f"cannot resolve the annotations of {name}: {exc}") from exc
    annotation = hints.get(params[1].name)
    if annotation is None:
        raise HandlerRegistrationError(f"{name}: annotate the payload parameter {params[1].name!r} with its type")
    args = typing.get_args(annotation)
    optional = type(None) in args and typing.get_origin(annotation) in (typing.Union, _UnionType)
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise HandlerRegistrationError(f"{name}: the payload annotation must name one type (or T | None)")
        annotation = rest[0]
    return annotation, optional


def _non_blank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _runtime_type(payload_type: Any) -> type | None:
    """The class an isinstance check uses: the type itself, or the origin of a generic alias (``dict[str, int]``)."""
    if isinstance(payload_type, type):
        return payload_type
    origin = typing.get_origin(payload_type)
    return origin if isinstance(origin, type) else None


def _is_protobuf_class(cls: type) -> bool:
    # Looked up lazily: protobuf is optional, and a class can only be a message if protobuf is imported.
    module = sys.modules.get("google.protobuf.message")
    return module is not None and issubclass(cls, module.Message)


def _typed(name: str, payload_type: type, fn: Callable[..., Any], *, optional: bool) -> Callable[..., Any]:
    def check(payload: object) -> object:
        if isinstance(payload, payload_type) or (payload is None and optional):
            return payload
        raise HandlerPayloadTypeError(
            f"handler {name!r} expects {payload_type.__qualname__}, got {type(payload).__qualname__}"
        )

    if _is_async(fn):

        @functools.wraps(fn)
        async def run_async(ctx: Any, payload: Any) -> Any:
            return await fn(ctx, check(payload))

        return run_async

    @functools.wraps(fn)
    def run(ctx: Any, payload: Any) -> Any:
        return fn(ctx, check(payload))

    return run


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def spec_payload_type(spec: object) -> Any:
    """The payload type a spec decodes into: ``spec.payload_type``, else ``type(spec.make())``, else ``None``.

    Works for any object with ``make`` (and optionally ``payload_type``), e.g. worker-grpc's ``HandlerSpec``.
    """
    declared = getattr(spec, "payload_type", None)
    if declared is not None:
        return declared
    make = getattr(spec, "make", None)
    if make is None:
        return None
    sample = make()
    return None if sample is None else type(sample)
