"""What the test worker processes share: a backend opened from a URL, a manager run until SIGTERM.

``fault_worker`` and ``schedule_node`` are the processes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any

from worker_core import TaskManager
from worker_core.plugins import DEFAULT_PLUGINS, Plugins

__all__ = ("open_backend", "run_until_sigterm")


def open_backend(url: str, modules: Sequence[str]) -> tuple[Any, Plugins]:
    """The backend ``url`` names and the plugins that made it: only ``modules`` (and the built-ins) when given."""
    plugins = Plugins(autoload=False, builtins=dict.fromkeys((*DEFAULT_PLUGINS, *modules))) if modules else Plugins()
    return plugins.backends().get(url.split("://", 1)[0])(url), plugins


async def run_until_sigterm(tm: TaskManager, backend: Any, ready: Callable[[], None]) -> None:
    """Run ``tm`` (``ready()`` once it runs) until SIGTERM, stop it gracefully, then close ``backend``."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with tm:
            ready()
            await stop.wait()
    finally:
        aclose = getattr(backend, "aclose", None)
        if aclose is not None:
            await aclose()
