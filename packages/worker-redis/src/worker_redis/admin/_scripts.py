"""The admin Lua scripts (``worker_redis/lua/admin_*.lua``), registered once per client."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ("AdminScripts", "script_source")


@cache
def script_source(name: str) -> str:
    """Text of ``lua/<name>.lua`` shipped in the package (read once per process)."""
    return (resources.files("worker_redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


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

        def load(name: str) -> AsyncScript:
            script: AsyncScript = client.register_script(script_source(name))
            return script

        return cls(
            requeue=load("admin_requeue"),
            replay_dlq=load("admin_replay_dlq"),
            delete=load("admin_delete"),
            purge=load("admin_purge"),
            page=load("admin_page"),
            get=load("admin_get"),
            overview=load("admin_overview"),
            pause_queue=load("admin_pause_queue"),
            import_entry=load("admin_import"),
        )
