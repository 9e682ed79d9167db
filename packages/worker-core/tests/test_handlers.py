from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional

import msgspec
import pytest
from google.protobuf import wrappers_pb2
from worker_core.durable import (
    DurableHandlerSpec,
    TypedDurableRegistry,
    TypedHandlerRegistry,
    default_codec_for,
    spec_payload_type,
)
from worker_core.errors import HandlerPayloadTypeError, HandlerRegistrationError, WorkerError


class Order(msgspec.Struct):
    order_id: int
    sku: str


class Refund(msgspec.Struct):
    order_id: int


# -- DurableHandlerSpec ---------------------------------------------------------------------------------


def test_spec_resolves_payload_type_from_make_once() -> None:
    calls = []

    def make() -> wrappers_pb2.StringValue:
        calls.append(1)
        return wrappers_pb2.StringValue()

    handler = DurableHandlerSpec(make, lambda ctx, payload: payload.value)
    assert handler.payload_type is wrappers_pb2.StringValue
    assert calls == [1]
    assert spec_payload_type(handler) is wrappers_pb2.StringValue
    assert calls == [1]  # cached: the codec path never calls make() to learn the type


def test_spec_with_payload_type_does_not_call_make() -> None:
    handler: DurableHandlerSpec[Order] = DurableHandlerSpec(None, lambda ctx, p: p.sku, payload_type=Order)
    assert handler.make is None
    assert handler.payload_type is Order


def test_spec_without_make_or_type_is_untyped() -> None:
    handler: DurableHandlerSpec[Any] = DurableHandlerSpec(None, lambda ctx, p: p)
    assert handler.payload_type is None
    assert spec_payload_type(handler) is None


def test_spec_rejects_bad_parts() -> None:
    with pytest.raises(HandlerRegistrationError, match="fn must be callable"):
        DurableHandlerSpec(dict, "not callable")  # type: ignore[arg-type]
    with pytest.raises(HandlerRegistrationError, match="make must be callable"):
        DurableHandlerSpec("nope", lambda ctx, p: p)  # type: ignore[arg-type]

    def broken() -> Order:
        return Order()  # type: ignore[call-arg]  # required fields missing

    with pytest.raises(HandlerRegistrationError, match=r"make\(\) raised"):
        DurableHandlerSpec(broken, lambda ctx, p: p)


def test_spec_payload_type_of_a_foreign_spec_calls_make() -> None:
    @dataclass
    class GrpcStyleSpec:
        make: Any
        fn: Any

    assert spec_payload_type(GrpcStyleSpec(wrappers_pb2.Int64Value, print)) is wrappers_pb2.Int64Value
    assert spec_payload_type(GrpcStyleSpec(None, print)) is None


# -- the decorator form ---------------------------------------------------------------------------------


async def test_decorator_takes_the_payload_type_from_the_annotation() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("place_order")
    async def place_order(ctx: Any, payload: Order) -> str:
        return f"{payload.order_id}:{payload.sku}"

    handler = registry.handlers()["place_order"]
    assert handler.payload_type is Order
    assert handler.make is None  # a Struct with required fields cannot be built empty
    assert inspect.iscoroutinefunction(handler.fn)
    assert await handler.fn(None, Order(7, "abc")) == "7:abc"
    assert inspect.iscoroutinefunction(place_order)  # the decorated function is returned unchanged
    assert await place_order(None, Order(1, "x")) == "1:x"


async def test_mismatched_payload_type_raises_before_user_code_runs() -> None:
    registry = TypedDurableRegistry()
    ran = []

    @registry.handler("place_order")
    async def place_order(ctx: Any, payload: Order) -> None:
        ran.append(payload)

    with pytest.raises(HandlerPayloadTypeError, match=r"expects Order, got Refund") as info:
        await registry["place_order"].fn(None, Refund(1))
    assert ran == []
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, WorkerError)
    with pytest.raises(HandlerPayloadTypeError, match="got NoneType"):
        await registry["place_order"].fn(None, None)


def test_plain_functions_stay_plain() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("refund")
    def refund(ctx: Any, payload: Refund) -> int:
        return payload.order_id * 2

    handler = registry["refund"]
    assert not inspect.iscoroutinefunction(handler.fn)
    assert handler.fn(None, Refund(21)) == 42
    with pytest.raises(HandlerPayloadTypeError):
        handler.fn(None, Order(1, "x"))


def test_optional_annotation_accepts_none() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("maybe")
    def maybe(ctx: Any, payload: Refund | None) -> str:
        return "none" if payload is None else "some"

    @registry.handler("maybe_old_style")
    def maybe_old(ctx: Any, payload: Optional[Refund]) -> str:  # noqa: UP045 - the typing.Optional spelling
        return "none" if payload is None else "some"

    for name in ("maybe", "maybe_old_style"):
        assert registry[name].payload_type is Refund
        assert registry[name].fn(None, None) == "none"
        assert registry[name].fn(None, Refund(1)) == "some"


def test_protobuf_annotation_gets_make_and_the_protobuf_codec() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("greet")
    def greet(ctx: Any, payload: wrappers_pb2.StringValue) -> str:
        return f"hello {payload.value}"

    handler = registry["greet"]
    assert handler.make is wrappers_pb2.StringValue
    codec = default_codec_for(handler)
    assert codec.name == "protobuf"
    payload = codec.decode(codec.encode(wrappers_pb2.StringValue(value="ada")), handler)
    assert handler.fn(None, payload) == "hello ada"


async def test_struct_handler_round_trips_through_its_default_codec() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("place_order")
    async def place_order(ctx: Any, payload: Order) -> int:
        return payload.order_id

    handler = registry["place_order"]
    codec = default_codec_for(handler)
    assert codec.name == "json"
    assert await handler.fn(None, codec.decode(codec.encode(Order(5, "s")), handler)) == 5


def test_generic_annotation_checks_the_origin() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("tally")
    def tally(ctx: Any, payload: dict[str, int]) -> int:
        return sum(payload.values())

    assert registry["tally"].payload_type == dict[str, int]
    assert registry["tally"].fn(None, {"a": 1, "b": 2}) == 3
    with pytest.raises(HandlerPayloadTypeError):
        registry["tally"].fn(None, [1, 2])


def test_unresolvable_string_annotation_is_a_registration_error() -> None:
    registry = TypedDurableRegistry()

    class LocalPayload(msgspec.Struct):  # local: invisible to get_type_hints under postponed annotations
        x: int

    def handler(ctx: Any, payload: LocalPayload) -> None:
        return None

    with pytest.raises(HandlerRegistrationError, match="cannot resolve the annotations of"):
        registry.handler("local")(handler)
    registry.add("local", LocalPayload, handler)  # the explicit form works for local types
    assert registry["local"].payload_type is LocalPayload


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda ctx: None, "must take"),
        (lambda ctx, payload: None, "annotate the payload parameter"),
    ],
)
def test_decorator_rejects_unusable_signatures(fn: Any, message: str) -> None:
    with pytest.raises(HandlerRegistrationError, match=message):
        TypedDurableRegistry().handler("h")(fn)


def test_union_of_two_types_is_rejected() -> None:
    def fn(ctx: Any, payload: Order | Refund | None) -> None:
        return None

    with pytest.raises(HandlerRegistrationError, match="must name one type"):
        TypedDurableRegistry().handler("h")(fn)


# -- the explicit form and the registry -----------------------------------------------------------------


def test_add_registers_explicitly() -> None:
    registry = TypedDurableRegistry()
    registry.add("refund", Refund, lambda ctx, p: p.order_id)
    registry.add("greet", wrappers_pb2.StringValue, lambda ctx, p: p.value, make=lambda: wrappers_pb2.StringValue())
    assert registry["refund"].fn(None, Refund(3)) == 3
    assert registry["greet"].make is not None
    assert registry["greet"].make().value == ""
    with pytest.raises(HandlerPayloadTypeError):
        registry["refund"].fn(None, {"order_id": 3})


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_name_is_rejected(name: str) -> None:
    with pytest.raises(HandlerRegistrationError, match="name is required"):
        TypedDurableRegistry().add(name, Refund, lambda ctx, p: p)


def test_duplicate_name_is_rejected_and_the_first_kept() -> None:
    registry = TypedDurableRegistry()
    registry.add("refund", Refund, lambda ctx, p: "first")
    with pytest.raises(HandlerRegistrationError, match="already registered"):
        registry.add("refund", Refund, lambda ctx, p: "second")
    with pytest.raises(HandlerRegistrationError, match="already registered"):

        @registry.handler("refund")
        def again(ctx: Any, payload: Refund) -> str:
            return "third"

    assert registry["refund"].fn(None, Refund(1)) == "first"
    assert len(registry) == 1


def test_add_rejects_bad_types_and_functions() -> None:
    registry = TypedDurableRegistry()
    with pytest.raises(HandlerRegistrationError, match="payload type must be a class"):
        registry.add("x", "Refund", lambda ctx, p: p)
    with pytest.raises(HandlerRegistrationError, match="fn is not callable"):
        registry.add("x", Refund, None)  # type: ignore[arg-type]
    with pytest.raises(HandlerRegistrationError, match="make is not callable"):
        registry.add("x", Refund, lambda ctx, p: p, make=3)  # type: ignore[arg-type]
    assert len(registry) == 0


def test_handlers_returns_a_copy() -> None:
    registry = TypedDurableRegistry()
    registry.add("refund", Refund, lambda ctx, p: p)
    mapping = registry.handlers()
    mapping.clear()
    assert "refund" in registry
    assert list(registry.handlers()) == ["refund"]


def test_generic_registry_builds_any_spec_type() -> None:
    @dataclass(frozen=True)
    class GrpcSpec:
        make: Any
        fn: Any
        full_name: str

    def factory(make: Any, fn: Any, *, payload_type: Any) -> GrpcSpec:
        return GrpcSpec(make, fn, payload_type.DESCRIPTOR.full_name)

    registry = TypedHandlerRegistry(factory)

    @registry.handler("greet")
    def greet(ctx: Any, payload: wrappers_pb2.StringValue) -> str:
        return payload.value

    built = registry["greet"]
    assert isinstance(built, GrpcSpec)
    assert built.full_name == "google.protobuf.StringValue"
    assert built.make is wrappers_pb2.StringValue
    with pytest.raises(HandlerPayloadTypeError):
        built.fn(None, wrappers_pb2.Int64Value())


def test_default_generic_registry_builds_durable_specs() -> None:
    registry = TypedHandlerRegistry()
    registry.add("refund", Refund, lambda ctx, p: p)
    assert isinstance(registry["refund"], DurableHandlerSpec)


def test_any_annotation_registers_an_untyped_handler() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("anything")
    def anything(ctx: Any, payload: Any) -> Any:
        return payload

    registry.add("objects", object, lambda ctx, p: p)
    for name in ("anything", "objects"):
        handler = registry[name]
        assert handler.payload_type is None
        codec = default_codec_for(handler)
        assert handler.fn(None, codec.decode(b'{"a": [1, 2]}', handler)) == {"a": [1, 2]}
        assert handler.fn(None, 3) == 3
