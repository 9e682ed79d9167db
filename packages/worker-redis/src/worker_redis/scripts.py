"""The backend's Lua scripts (``worker_redis/lua/*.lua``): read once, registered once per client.

Each script is a redis-py ``AsyncScript``: it runs with ``EVALSHA`` and loads itself transparently
(``SCRIPT LOAD``, on every primary of a cluster) when the server answers ``NOSCRIPT``, for example after
a restart. :func:`script_source` and :func:`register` are reusable by other modules of the package.

A few files hold functions several scripts share (``dead_prune.lua``); :data:`INCLUDES` names the scripts they are
prepended to when registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ("BACKEND_SCRIPTS", "INCLUDES", "BackendScripts", "register", "script_source", "script_text")

#: Scripts of the durable backend (file stems under ``worker_redis/lua``).
BACKEND_SCRIPTS = (
    "enqueue",
    "dequeue",
    "ack",
    "nack",
    "fail",
    "extend",
    "extend_many",
    "release",
    "global_rate",
    "leader",
    "node_leave",
    "outcome",
    "enqueue_tick",
    "schedule_runs",
    "schedule_publish",
)

#: Shared function files prepended to a script when it is registered: script stem -> file stems.
INCLUDES: dict[str, tuple[str, ...]] = {"fail": ("dead_prune",), "dequeue": ("dead_prune",)}


@cache
def script_source(name: str) -> str:
    """Text of ``lua/<name>.lua`` shipped in the package (read once per process)."""
    return (resources.files("worker_redis") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_text(name: str) -> str:
    """What runs on the server for ``name``: its :data:`INCLUDES`, then ``lua/<name>.lua``."""
    return "".join(script_source(part) + "\n" for part in INCLUDES.get(name, ())) + script_source(name)


def register(client: Any, name: str) -> AsyncScript:
    """Bind ``lua/<name>.lua`` (with its includes) to ``client`` (``redis.asyncio.Redis`` or ``RedisCluster``)."""
    script: AsyncScript = client.register_script(script_text(name))
    return script


@dataclass(frozen=True, slots=True)
class BackendScripts:
    """Every backend script bound to one client."""

    enqueue: AsyncScript
    dequeue: AsyncScript
    ack: AsyncScript
    nack: AsyncScript
    fail: AsyncScript
    extend: AsyncScript
    extend_many: AsyncScript
    release: AsyncScript
    global_rate: AsyncScript
    leader: AsyncScript
    node_leave: AsyncScript
    outcome: AsyncScript
    enqueue_tick: AsyncScript
    schedule_runs: AsyncScript
    schedule_publish: AsyncScript

    @classmethod
    def bind(cls, client: Any) -> BackendScripts:
        """Register every backend script on ``client``; no I/O happens here."""
        return cls(**{name: register(client, name) for name in BACKEND_SCRIPTS})
