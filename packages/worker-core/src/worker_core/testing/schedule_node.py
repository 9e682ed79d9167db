"""Worker processes running one 1-second durable schedule, for a backend's schedule fault tests.

Run ``python -m worker_core.testing.schedule_node URL LOG [--plugin MODULE]...``; :class:`ScheduleNodes` starts
them for you. Each runs one :class:`~worker_core.TaskManager` on the backend ``URL`` opens (through the backend
plugins: ``--plugin`` registers only those modules, as ``fault_worker`` does) with the cron schedule
:data:`SCHEDULE` (``* * * * * *``), whose task is the durable handler ``tick``. It appends to ``LOG``, flushed at
once (a SIGKILL loses nothing written): ``READY <epoch s>`` once the manager runs, then per run of a tick's task
``R <tick ms> <pid> <epoch s>``. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTask
from worker_core.schedules import META_SCHEDULE_TICK
from worker_core.testing._nodes import open_backend, run_until_sigterm

__all__ = ("SCHEDULE", "ScheduleNodes", "main")

#: The name of the schedule every node runs.
SCHEDULE = "every-second"


async def _run(url: str, plugin_modules: Sequence[str], log: TextIO) -> None:
    def tick(ctx: TaskContext, payload: object) -> None:
        metadata = ctx.task.metadata or {}
        log.write(f"R {metadata.get(META_SCHEDULE_TICK, '-')} {os.getpid()} {time.time():.4f}\n")
        log.flush()

    backend, plugins = open_backend(url, plugin_modules)
    tm = TaskManager(
        max_workers=4,
        durable_backend=backend,
        durable_handlers={"tick": DurableHandlerSpec(None, tick)},
        durable_codec="json",
        durable_lease=2.0,
        durable_poll_interval=0.05,
        plugins=plugins,
    )
    tm.register_durable_cron_task(SCHEDULE, "* * * * * *", lambda: DurableTask("tick", {"n": 1}))

    def ready() -> None:
        log.write(f"READY {time.time():.4f}\n")
        log.flush()

    await run_until_sigterm(tm, backend, ready)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (``URL LOG [--plugin MODULE]...``) and run one node until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m worker_core.testing.schedule_node")
    parser.add_argument("url", help="durable backend URL (redis://, sqlite:///, postgresql:// ...)")
    parser.add_argument("log", help="the log to append to")
    parser.add_argument("--plugin", action="append", default=[])
    args = parser.parse_args(argv)
    with open(args.log, "a", encoding="utf-8") as out:
        asyncio.run(_run(args.url, args.plugin, out))


class ScheduleNodes:
    """Schedule nodes on one backend URL: :meth:`spawn` starts one, :meth:`stop` ends them all.

    Args:
        url: The backend URL every node opens.
        folder: Where each node's log (``node-N.log``) and stderr (``node-N.err``) go.
        plugins: Plugin modules the nodes register (``("worker_sqlite.plugin",)``); empty: every installed one.
    """

    def __init__(self, url: str, folder: Path, *, plugins: Sequence[str] = ()) -> None:
        self.url = url
        self.folder = Path(folder)
        self.plugins = tuple(plugins)
        #: Every node started, in order (a test SIGKILLs one of them).
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> Path:
        """Start one more node; the path of its log."""
        log = self.folder / f"node-{len(self.procs)}.log"
        command = [sys.executable, "-m", "worker_core.testing.schedule_node", self.url, str(log)]
        for module in self.plugins:
            command += ["--plugin", module]
        env = {**os.environ, "WORKER_PLUGINS_AUTOLOAD": "0"} if self.plugins else None
        with log.with_suffix(".err").open("wb") as err:
            self.procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env))
        return log

    def stop(self) -> None:
        """SIGTERM every node still running and wait for each (SIGKILL after 15 s)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


if __name__ == "__main__":
    main()
