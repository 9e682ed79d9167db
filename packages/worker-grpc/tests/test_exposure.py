"""Health checking and reflection: each on or off, or behind the auth hook; reflection off unless asked for.

Measured before these options existed: health checking and reflection answered with no token, and reflection
could not be turned off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import NO_PROXY, Served, ServeFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from worker_core import TaskManager
from worker_core.errors import ConfigurationError
from worker_grpc import BearerTokenAuth

TOKEN = (("authorization", "Bearer s3cret"),)


@pytest.fixture
async def chan_factory() -> AsyncIterator[Any]:
    opened: list[grpc.aio.Channel] = []

    def make(served: Served) -> Any:
        chan = grpc.aio.insecure_channel(served.address, options=NO_PROXY)
        opened.append(chan)
        return chan  # Any: the health and reflection stubs are typed for sync channels only

    yield make
    for chan in opened:
        await chan.close()


async def health_status(chan: Any, metadata: tuple[tuple[str, str], ...] = ()) -> int:
    stub: Any = health_pb2_grpc.HealthStub(chan)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), metadata=metadata)
    return int(reply.status)


async def services(chan: Any, metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(chan)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata
    )
    try:
        async for reply in call:
            return {s.name for s in reply.list_services_response.service}
    finally:
        call.cancel()
    raise AssertionError("no reflection reply")


async def code_of(awaitable: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    return caught.value.code()


async def test_reflection_is_off_by_default(
    serve: ServeFactory, chan_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKER_ENV", raising=False)
    chan = chan_factory(await serve())
    assert await code_of(services(chan)) is grpc.StatusCode.UNIMPLEMENTED
    assert await health_status(chan) == health_pb2.HealthCheckResponse.SERVING  # health stays on by default


async def test_reflection_is_on_by_default_in_development(
    serve: ServeFactory, chan_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_ENV", "development")
    names = await services(chan_factory(await serve()))
    assert {"worker.v1.WorkerService", "grpc.health.v1.Health"} <= names


async def test_health_and_reflection_behind_the_auth_hook(serve: ServeFactory, chan_factory: Any) -> None:
    served = await serve(auth=BearerTokenAuth({"s3cret"}), health="auth", reflection="auth")
    chan = chan_factory(served)
    assert await code_of(health_status(chan)) is grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(services(chan)) is grpc.StatusCode.UNAUTHENTICATED
    assert await health_status(chan, TOKEN) == health_pb2.HealthCheckResponse.SERVING
    assert "worker.v1.WorkerService" in await services(chan, TOKEN)


async def test_health_open_while_the_api_needs_a_token(serve: ServeFactory, chan_factory: Any) -> None:
    served = await serve(auth=BearerTokenAuth({"s3cret"}))  # the default: health open, reflection off
    chan = chan_factory(served)
    assert await health_status(chan) == health_pb2.HealthCheckResponse.SERVING  # for load balancers' probes
    assert await code_of(services(chan)) is grpc.StatusCode.UNIMPLEMENTED


async def test_health_and_reflection_off(serve: ServeFactory, chan_factory: Any, manager: TaskManager) -> None:
    chan = chan_factory(await serve(health="off", reflection="off"))
    assert await code_of(health_status(chan)) is grpc.StatusCode.UNIMPLEMENTED
    assert await code_of(services(chan)) is grpc.StatusCode.UNIMPLEMENTED


async def test_reflection_without_health_does_not_list_it(serve: ServeFactory, chan_factory: Any) -> None:
    names = await services(chan_factory(await serve(health="off", reflection="open")))
    assert "worker.v1.WorkerService" in names
    assert "grpc.health.v1.Health" not in names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"health": "auth"}, "health='auth' needs an auth hook"),
        ({"reflection": "auth"}, "reflection='auth' needs an auth hook"),
        ({"reflection": "yes"}, "reflection must be 'off', 'open' or 'auth'"),
    ],
)
async def test_bad_exposure_options_are_configuration_errors(
    serve: ServeFactory, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await serve(**kwargs)
