"""The typed handler registry (go-worker's typed_registry_test.go, gRPC side)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.wrappers_pb2 import Int64Value, StringValue
from worker_core.errors import HandlerPayloadTypeError, HandlerRegistrationError
from worker_grpc import HandlerRegistry, HandlerSpec
from worker_grpc.handlers import resolve_handlers
from worker_grpc.payloads import CreateUserPayload


async def test_typed_handler_is_called_with_its_message_type() -> None:
    registry = HandlerRegistry()
    seen: list[Any] = []

    @registry.handler("create_user")
    async def create_user(ctx: object, payload: CreateUserPayload) -> str:
        seen.append(payload)
        return "ok"

    spec = registry.handlers()["create_user"]
    assert isinstance(spec.make(), CreateUserPayload)
    payload = CreateUserPayload(username="u")
    assert await spec.fn(None, payload) == "ok"
    assert seen == [payload]


async def test_wrong_message_type_raises_a_typed_error() -> None:
    registry = HandlerRegistry()

    @registry.handler("create_user")
    async def create_user(ctx: object, payload: CreateUserPayload) -> str:
        return "ok"

    with pytest.raises(HandlerPayloadTypeError, match=r"worker\.v1\.CreateUserPayload"):
        await registry.handlers()["create_user"].fn(None, StringValue(value="x"))


def test_plain_functions_stay_plain_and_get_an_empty_payload_when_none_is_sent() -> None:
    registry = HandlerRegistry()

    def count(ctx: object, payload: Int64Value) -> int:
        return payload.value

    registry.add("count", Int64Value, count)
    fn = registry.handlers()["count"].fn
    assert fn(None, None) == 0
    assert fn(None, Int64Value(value=3)) == 3
    assert resolve_handlers(registry)["count"].is_async is False


def test_optional_annotation_receives_none() -> None:
    registry = HandlerRegistry()

    @registry.handler("maybe")
    def maybe(ctx: object, payload: StringValue | None) -> str:
        return "none" if payload is None else payload.value

    assert registry.handlers()["maybe"].fn(None, None) == "none"


def test_duplicate_and_bad_registrations_are_refused() -> None:
    registry = HandlerRegistry()
    registry.add("a", StringValue, lambda ctx, p: p)
    with pytest.raises(HandlerRegistrationError, match="already registered"):
        registry.add("a", StringValue, lambda ctx, p: p)
    with pytest.raises(HandlerRegistrationError, match="name is required"):
        registry.add(" ", StringValue, lambda ctx, p: p)
    with pytest.raises(HandlerRegistrationError, match="protobuf message class"):
        registry.add("b", dict, lambda ctx, p: p)  # type: ignore[type-var]

    with pytest.raises(HandlerRegistrationError, match="annotate the payload"):

        @registry.handler("c")
        def untyped(ctx: object, payload: dict[str, str]) -> None:
            return None

    with pytest.raises(HandlerRegistrationError, match=r"must take \(ctx, payload\)"):

        @registry.handler("d")
        def no_payload(ctx: object) -> None:
            return None

    assert "a" in registry
    assert len(registry) == 1


def test_resolve_checks_specs_once() -> None:
    resolved = resolve_handlers({"s": HandlerSpec(StringValue, lambda ctx, p: p)})
    assert resolved["s"].full_name == "google.protobuf.StringValue"
    with pytest.raises(HandlerRegistrationError, match="must return a protobuf message"):
        resolve_handlers({"bad": HandlerSpec(dict, lambda ctx, p: p)})
