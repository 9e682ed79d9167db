"""The ``worker.plugins`` entry point: the ``sqlite://`` durable backend."""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl

from .backend import SqliteDurableBackend

__all__ = ("worker_register_backends",)


@hookimpl
def worker_register_backends(registry: Any) -> None:
    """Register :meth:`SqliteDurableBackend.from_url` for the ``sqlite`` scheme."""
    registry.add("sqlite", SqliteDurableBackend.from_url, owner="worker-sqlite")
