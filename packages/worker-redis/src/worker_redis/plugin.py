"""The ``worker.plugins`` entry point: ``redis://`` and ``rediss://`` durable backends."""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl

from .backend import RedisDurableBackend

__all__ = ("worker_register_admins", "worker_register_backends")


@hookimpl
def worker_register_backends(registry: Any) -> None:
    """Register :meth:`RedisDurableBackend.from_url` for the ``redis`` and ``rediss`` schemes."""
    registry.add("redis", RedisDurableBackend.from_url, owner="worker-redis")
    registry.add("rediss", RedisDurableBackend.from_url, owner="worker-redis")


@hookimpl
def worker_register_admins(registry: Any) -> None:
    """Register :meth:`RedisAdmin.from_url <worker_redis.admin.RedisAdmin.from_url>` for both schemes."""
    from .admin import RedisAdmin  # lazy: the backend's users never pay for the admin module

    registry.add("redis", RedisAdmin.from_url, owner="worker-redis")
    registry.add("rediss", RedisAdmin.from_url, owner="worker-redis")
