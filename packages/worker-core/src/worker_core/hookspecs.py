"""The pluggy hook specifications of the ``worker`` project.

Plugin distributions declare an entry point in the ``worker.plugins`` group::

    [project.entry-points."worker.plugins"]
    redis = "worker_redis.plugin"

and implement any of these hooks with :data:`hookimpl`. Hooks are synchronous and only *register*
objects; the registered objects do the async work. Parameters may be added to a spec later, never
removed or renamed (pluggy lets an implementation accept fewer arguments than the spec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ("PROJECT_NAME", "hookimpl", "hookspec")

PROJECT_NAME = "worker"
#: Marker for hook implementations: ``@hookimpl def worker_register_backends(registry): ...``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def worker_register_backends(registry: Registry[Any]) -> None:
    """Register durable backend factories by URL scheme.

    ``registry.add("redis", RedisDurableBackend.from_url)``: the factory is called with the whole URL
    and returns an object implementing :class:`~worker_core.durable.types.DurableBackend`.
    """


@hookspec
def worker_register_admins(registry: Registry[Any]) -> None:
    """Register durable admin factories by URL scheme (what ``workerctl durable`` and dashboards open).

    ``registry.add("redis", RedisAdmin.from_url)``: the factory is called with the whole URL and returns an
    object implementing :class:`~worker_core.admin.DurableAdmin` over the same store the backend of that URL
    uses. :func:`worker_core.admin.open_admin` looks it up.
    """


@hookspec
def worker_register_codecs(registry: Registry[Any]) -> None:
    """Register durable codec factories by name: ``registry.add("msgpack", MsgpackCodec)``.

    The factory is called with no arguments and returns a :class:`~worker_core.durable.codecs.DurableCodec`.
    """


@hookspec
def worker_register_middleware(registry: Registry[Any]) -> None:
    """Register middleware factories by name; each takes a ``Service`` and returns a wrapped ``Service``."""


@hookspec
def worker_register_tracers(registry: Registry[Any]) -> None:
    """Register tracer factories by name; each returns a :class:`~worker_core.protocols.TaskTracer`."""


@hookspec
def worker_register_authenticators(registry: Registry[Any]) -> None:
    """Register gRPC authenticator factories by name (used by worker-grpc)."""


@hookspec
def worker_register_instrumentation(registry: Registry[Any]) -> None:
    """Register instrumentation binders (metrics exporters) by name.

    A binder is called as ``factory(manager, **options)`` by
    :meth:`TaskManager.use_plugin_instrumentation <worker_core.TaskManager.use_plugin_instrumentation>`
    and connects the manager to its exporter, typically through ``manager.add_instrumentation``
    (worker-otel registers ``"otel"``: ``factory(manager, provider=meter_provider)``; ``provider=None``
    unbinds). It returns nothing.
    """
