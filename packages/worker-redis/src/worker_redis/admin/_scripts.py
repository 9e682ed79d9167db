"""The admin Lua scripts (``worker_redis/lua/admin_*.lua``), registered once per client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker_redis.scripts import register

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ("AdminScripts",)

#: Field name -> script file stem under ``worker_redis/lua``.
_ADMIN_SCRIPTS = {
    "requeue": "admin_requeue",
    "replay_dlq": "admin_replay_dlq",
    "delete": "admin_delete",
    "purge": "admin_purge",
    "page": "admin_page",
    "get": "admin_get",
    "overview": "admin_overview",
    "pause_queue": "admin_pause_queue",
    "import_entry": "admin_import",
}


@dataclass(frozen=True, slots=True)
class AdminScripts:
    """Every admin script bound to one client; EVALSHA with a transparent SCRIPT LOAD on NOSCRIPT."""

    requeue: AsyncScript
    replay_dlq: AsyncScript
    delete: AsyncScript
    purge: AsyncScript
    page: AsyncScript
    get: AsyncScript
    overview: AsyncScript
    pause_queue: AsyncScript
    import_entry: AsyncScript

    @classmethod
    def register(cls, client: Any) -> AdminScripts:
        """Register the scripts on ``client`` (a ``redis.asyncio`` client); no I/O happens here."""
        return cls(**{field: register(client, stem) for field, stem in _ADMIN_SCRIPTS.items()})
