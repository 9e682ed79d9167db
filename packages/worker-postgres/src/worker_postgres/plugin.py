"""The ``worker.plugins`` entry point: ``postgresql://`` and ``postgres://`` durable backends (and admins)."""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl

from .admin import PostgresAdmin
from .backend import PostgresDurableBackend

__all__ = ("worker_register_admins", "worker_register_backends")


@hookimpl
def worker_register_backends(registry: Any) -> None:
    """Register :meth:`PostgresDurableBackend.from_url` for the ``postgresql`` and ``postgres`` schemes."""
    registry.add("postgresql", PostgresDurableBackend.from_url, owner="worker-postgres")
    registry.add("postgres", PostgresDurableBackend.from_url, owner="worker-postgres")


@hookimpl
def worker_register_admins(registry: Any) -> None:
    """Register :meth:`PostgresAdmin.from_url` for the ``postgresql`` and ``postgres`` schemes."""
    registry.add("postgresql", PostgresAdmin.from_url, owner="worker-postgres")
    registry.add("postgres", PostgresAdmin.from_url, owner="worker-postgres")
