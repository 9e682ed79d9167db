"""The ``worker.plugins`` entry point: the ``sqlite://`` durable backend and its admin."""

from __future__ import annotations

from typing import Any

from worker_core.hookspecs import hookimpl

from .backend import SqliteDurableBackend

__all__ = ("worker_register_admins", "worker_register_backends")


@hookimpl
def worker_register_backends(registry: Any) -> None:
    """Register :meth:`SqliteDurableBackend.from_url` for the ``sqlite`` scheme."""
    registry.add("sqlite", SqliteDurableBackend.from_url, owner="worker-sqlite")


@hookimpl
def worker_register_admins(registry: Any) -> None:
    """Register :meth:`SqliteAdmin.from_url <worker_sqlite.admin.SqliteAdmin.from_url>` for ``sqlite``."""
    from .admin import SqliteAdmin

    registry.add("sqlite", SqliteAdmin.from_url, owner="worker-sqlite")
