"""``serve()``: a started ``grpc.aio`` server with the WorkerService, health checking and reflection."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from worker_core import TaskManager
from worker_core.errors import ConfigurationError

from ._proto.worker.v1 import worker_pb2_grpc as pb_grpc
from .auth import AuthHook
from .handlers import Handlers
from .idempotency import IdempotencyCache
from .servicer import _DEFAULT_CACHE, SERVICE_NAME, WorkerServiceServicer, _Default
from .tls import ServerTLS

__all__ = ("DEFAULT_MAX_MESSAGE_BYTES", "serve", "server_port")

#: gRPC's own default receive limit; a larger request is refused with ``RESOURCE_EXHAUSTED``.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_PORTS: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()

_HealthContext = grpc.aio.ServicerContext[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


class _ManagerHealth(health.aio.HealthServicer):
    """Health that follows the manager: ``NOT_SERVING`` for good once the manager has stopped."""

    def __init__(self, manager: TaskManager) -> None:
        super().__init__()
        self._manager = manager

    async def _follow(self) -> None:
        if not self._manager.running:
            await self.enter_graceful_shutdown()  # a stopped manager does not restart

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: _HealthContext
    ) -> health_pb2.HealthCheckResponse:
        await self._follow()
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: _HealthContext) -> None:
        await self._follow()
        await super().Watch(request, context)


async def serve(
    manager: TaskManager,
    handlers: Handlers,
    address: str,
    *,
    auth: AuthHook | None = None,
    tls: ServerTLS | None = None,
    idempotency: IdempotencyCache | _Default | None = _DEFAULT_CACHE,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    stream_buffer: int = 256,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Server:
    """Build, bind and start a ``grpc.aio.Server`` serving ``manager`` on ``address``.

    The server also answers ``grpc.health.v1.Health`` (``SERVING`` for ``""`` and
    ``worker.v1.WorkerService``; ``NOT_SERVING`` once the manager has stopped) and server reflection.
    Without ``tls`` it listens in plaintext; with a :class:`~worker_grpc.ServerTLS` it speaks TLS only
    (mutual TLS when ``client_ca`` is set).
    Stop it with ``await server.stop(grace)``; the manager is yours to stop.

    Args:
        manager: The started :class:`worker_core.TaskManager`.
        handlers: See :class:`~worker_grpc.WorkerServiceServicer`.
        address: ``"host:port"``; port ``0`` picks a free one (read it with :func:`server_port`).
        auth: The auth hook, called at the start of every RPC.
        tls: Certificates for TLS / mTLS.
        idempotency: See :class:`~worker_grpc.WorkerServiceServicer`.
        max_message_bytes: Largest request (and response) accepted.
        stream_buffer: Results buffered per ``StreamResults`` client.
        options: Extra ``grpc.aio.server`` channel options.
    """
    if max_message_bytes < 1:
        raise ConfigurationError("max_message_bytes must be >= 1")
    servicer = WorkerServiceServicer(manager, handlers, auth=auth, idempotency=idempotency, stream_buffer=stream_buffer)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ]
    )
    pb_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    health_servicer = _ManagerHealth(manager)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigurationError(f"cannot listen on {address!r}: {exc}") from exc
    if port == 0:
        raise ConfigurationError(f"cannot listen on {address!r}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    _PORTS[server] = port
    return server


def server_port(server: grpc.aio.Server) -> int:
    """The port a server returned by :func:`serve` is bound to (useful with port ``0``)."""
    try:
        return _PORTS[server]
    except KeyError:
        raise ConfigurationError("this server was not started by worker_grpc.serve()") from None
