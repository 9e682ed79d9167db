"""``serve()``: a started ``grpc.aio`` server with the WorkerService and, as configured, health and reflection."""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, Literal, TypeAlias

import grpc
from grpc_health.v1 import health as health_module
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as reflection_module
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from worker_core import TaskManager
from worker_core.errors import ConfigurationError

from ._proto.worker.v1 import worker_pb2_grpc as pb_grpc
from .access import Authorizer
from .auth import AuthHook, check_auth
from .handlers import Handlers
from .idempotency import IdempotencyCache
from .servicer import _DEFAULT_CACHE, SERVICE_NAME, WorkerServiceServicer, _Default
from .streams import StreamLimits
from .tls import ServerTLS

__all__ = (
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ENV_VAR",
    "Exposure",
    "default_reflection",
    "serve",
    "server_port",
    "server_servicer",
)

#: ``"off"``: not served; ``"open"``: served to any caller; ``"auth"``: served after the auth hook accepts the call.
Exposure: TypeAlias = Literal["off", "open", "auth"]

#: ``WORKER_ENV=development`` turns reflection on when ``serve(reflection=None)`` (the default).
ENV_VAR = "WORKER_ENV"

_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
_REFLECTION_INFO = f"/{reflection_module.SERVICE_NAME}/ServerReflectionInfo"

#: gRPC's own default receive limit; a larger request is refused with ``RESOURCE_EXHAUSTED``.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_PORTS: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()
_SERVICERS: weakref.WeakKeyDictionary[grpc.aio.Server, WorkerServiceServicer] = weakref.WeakKeyDictionary()

_HealthContext = grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


class _ManagerHealth(health_module.aio.HealthServicer):
    """Health that follows the manager: ``NOT_SERVING`` for good once the manager has stopped."""

    def __init__(self, manager: TaskManager, auth: AuthHook | None) -> None:
        super().__init__()
        self._manager = manager
        self._auth = auth  # None: open to every caller

    async def _follow(self) -> None:
        if not self._manager.running:
            await self.enter_graceful_shutdown()  # a stopped manager does not restart

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: _HealthContext
    ) -> health_pb2.HealthCheckResponse:
        if self._auth is not None:
            await check_auth(self._auth, context, _HEALTH_CHECK, request)
        await self._follow()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: _HealthContext) -> None:
        if self._auth is not None:
            await check_auth(self._auth, context, _HEALTH_WATCH, request)
        await self._follow()
        await super().Watch(request, context)


_ReflectionContext = grpc.aio.ServicerContext[
    reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
]


class _GuardedReflection(reflection_module.aio.ReflectionServicer):
    """Server reflection that runs the auth hook once per call before answering."""

    def __init__(self, service_names: Sequence[str], auth: AuthHook) -> None:
        super().__init__(service_names)
        self._auth = auth

    # The stubs declare a coroutine returning an iterable; grpc.aio's servicer is an async generator (as here).
    async def ServerReflectionInfo(  # type: ignore[override]
        self, request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest], context: _ReflectionContext
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        await check_auth(self._auth, context, _REFLECTION_INFO, None)
        inner: Any = super().ServerReflectionInfo(request_iterator, context)
        async for response in inner:
            yield response


def default_reflection() -> Exposure:
    """``"open"`` when ``WORKER_ENV`` is ``development`` (or ``dev``), else ``"off"``."""
    return "open" if os.environ.get(ENV_VAR, "").strip().lower() in ("development", "dev") else "off"


def _exposure(value: object, name: str, auth: AuthHook | None) -> Exposure:
    if value == "off" or value == "open":
        return value
    if value == "auth":
        if auth is None:
            raise ConfigurationError(f"{name}='auth' needs an auth hook")
        return "auth"
    raise ConfigurationError(f"{name} must be 'off', 'open' or 'auth', got {value!r}")


async def serve(
    manager: TaskManager,
    handlers: Handlers,
    address: str,
    *,
    auth: AuthHook | None = None,
    authorize: Authorizer | None = None,
    tls: ServerTLS | None = None,
    idempotency: IdempotencyCache | _Default | None = _DEFAULT_CACHE,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    stream_buffer: int = 256,
    stream_limits: StreamLimits | None = None,
    health: Exposure = "open",
    reflection: Exposure | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Server:
    """Build, bind and start a ``grpc.aio.Server`` serving ``manager`` on ``address``.

    Besides the WorkerService, the server answers ``grpc.health.v1.Health`` (``SERVING`` for ``""`` and
    ``worker.v1.WorkerService``; ``NOT_SERVING`` once the manager has stopped) unless ``health="off"``,
    and server reflection when ``reflection`` is ``"open"`` or ``"auth"`` (by default only with
    ``WORKER_ENV=development``). ``"auth"`` runs the auth hook first, as for the WorkerService.
    Without ``tls`` it listens in plaintext; with a :class:`~worker_grpc.ServerTLS` it speaks TLS only
    (mutual TLS when ``client_ca`` is set).
    Stop it with ``await server.stop(grace)``; the manager is yours to stop.

    Args:
        manager: The started :class:`worker_core.TaskManager`.
        handlers: See :class:`~worker_grpc.WorkerServiceServicer`.
        address: ``"host:port"``; port ``0`` picks a free one (read it with :func:`server_port`).
        auth: The auth hook, called at the start of every RPC; it returns the caller's principal.
        authorize: What a principal may see of other principals' tasks (see :mod:`worker_grpc.access`).
        tls: Certificates for TLS / mTLS.
        idempotency: See :class:`~worker_grpc.WorkerServiceServicer`.
        max_message_bytes: Largest request (and response) accepted.
        stream_buffer: Results buffered per ``StreamResults`` call without ids.
        stream_limits: Stream bounds (see :class:`~worker_grpc.StreamLimits`); ``stream_buffer`` is then ignored.
        health: ``"open"`` (default), ``"auth"`` or ``"off"``.
        reflection: ``"off"``, ``"open"`` or ``"auth"``; ``None``: :func:`default_reflection`.
        options: Extra ``grpc.aio.server`` channel options.

    Raises:
        ConfigurationError: a bad option (``"auth"`` without an auth hook, say) or an address that cannot be bound.
    """
    if max_message_bytes < 1:
        raise ConfigurationError("max_message_bytes must be >= 1")
    health_mode = _exposure(health, "health", auth)
    reflection_mode = _exposure(default_reflection() if reflection is None else reflection, "reflection", auth)
    servicer = WorkerServiceServicer(
        manager,
        handlers,
        auth=auth,
        authorize=authorize,
        idempotency=idempotency,
        stream_buffer=stream_buffer,
        stream_limits=stream_limits,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ]
    )
    pb_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    health_servicer = None
    if health_mode != "off":
        health_servicer = _ManagerHealth(manager, auth if health_mode == "auth" else None)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_mode != "off":
        names = [SERVICE_NAME, reflection_module.SERVICE_NAME]
        if health_servicer is not None:
            names.insert(1, health_module.SERVICE_NAME)
        if reflection_mode == "auth":
            assert auth is not None
            add_reflection: Any = reflection_pb2_grpc.add_ServerReflectionServicer_to_server  # untyped in the stubs
            add_reflection(_GuardedReflection(names, auth), server)
        else:
            reflection_module.enable_server_reflection(names, server)
    try:
        port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {address!r}: {exc}") from exc
    if port == 0:
        raise ConfigurationError(f"cannot listen on {address!r}")
    await server.start()
    if health_servicer is not None:
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    _PORTS[server] = port
    _SERVICERS[server] = servicer
    return server


def server_port(server: grpc.aio.Server) -> int:
    """The port a server returned by :func:`serve` is bound to (useful with port ``0``)."""
    try:
        return _PORTS[server]
    except KeyError:
        raise ConfigurationError("this server was not started by worker_grpc.serve()") from None


def server_servicer(server: grpc.aio.Server) -> WorkerServiceServicer:
    """The :class:`~worker_grpc.WorkerServiceServicer` of a server returned by :func:`serve` (its stream metrics)."""
    try:
        return _SERVICERS[server]
    except KeyError:
        raise ConfigurationError("this server was not started by worker_grpc.serve()") from None
