"""worker-grpc's plugin (entry point ``grpc`` in ``worker.plugins``): registers its authenticators."""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl
from worker_core.registry import Registry

from .auth import BearerTokenAuth

__all__ = ("worker_register_authenticators",)


@hookimpl
def worker_register_authenticators(registry: Registry[Any]) -> None:
    """``bearer``: :class:`~worker_grpc.BearerTokenAuth` (``registry.get("bearer")(tokens)``)."""
    registry.add("bearer", BearerTokenAuth, owner="worker-grpc")
