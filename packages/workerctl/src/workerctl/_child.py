"""One worker process under the supervisor: :func:`main` in a fresh interpreter, its settings read from stdin.

The supervisor starts each worker process as a fresh interpreter (``subprocess``, never a fork of itself), writes
the node's resolved settings to its stdin as one JSON document and closes it (so a Redis password is in neither
argv nor the environment), and passes the write end of a pipe. Over that pipe the child sends a heartbeat line
every :data:`HEARTBEAT_S` from its event loop (the loop its lease loop runs on, so a stopped or wedged loop goes
silent): whether its manager is up and accepting, how many tasks it finished, its resident memory and its
counters. It runs the same node as ``--processes 1`` (its own ``TaskManager``, its own lease loop), plus:

- **recycling**: past ``max_tasks`` finished tasks (counted by an instrumentation object's ``on_finish``) or
  ``max_memory`` bytes of resident memory (``/proc/self/statm``; ``resource`` elsewhere), it stops the way
  SIGTERM does (nothing more leased, unstarted leases handed back, running tasks finish) and exits
  :data:`RECYCLE_EXIT`, which tells the supervisor to start a replacement at once;
- **orphan guard**: when its parent changes (the supervisor died, even by SIGKILL) it stops gracefully and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from worker_core.status import TaskStatus

__all__ = ("HEARTBEAT_S", "RECYCLE_EXIT", "ChildLink", "main", "rss_bytes")

logger = logging.getLogger("workerctl.worker")

RECYCLE_EXIT = 75  # EX_TEMPFAIL: "replace me", never a crash
HEARTBEAT_S = 0.5
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident memory now (Linux ``/proc/self/statm``; elsewhere the peak, from ``resource``)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _Finished:
    """An instrumentation object: counts tasks that reached a terminal status, checks the limits after each."""

    def __init__(self, link: ChildLink) -> None:
        self.count = 0
        self._link = link

    def on_finish(self, task: Any, status: TaskStatus, latency_s: float | None) -> None:
        self.count += 1
        link = self._link
        if self.count == link.max_tasks:
            link.recycle(f"{self.count} tasks finished (--max-tasks-per-child {link.max_tasks})")
        elif link.max_memory is not None:
            link.check_memory()


class ChildLink:
    """The child's end of the supervisor's pipe: heartbeats out, and the recycling limits."""

    def __init__(self, fd: int, index: int, max_tasks: int | None, max_memory: int | None, parent: int) -> None:
        self.index = index
        self.recycled: str | None = None  # why this child stops to be replaced
        self._fd = fd
        self.max_tasks = max_tasks
        self.max_memory = max_memory
        self._parent = parent  # the supervisor's pid, from the spec: it may be gone before this process is up
        self._manager: Any = None
        self._stop: asyncio.Event | None = None
        self._finished = _Finished(self)
        self._beat: asyncio.Task[None] | None = None
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # a process the app starts must not hold the pipe open past our exit

    def start(self, stop: asyncio.Event) -> None:
        """Begin heartbeating (not ready yet); ``stop`` is the node's graceful-stop event."""
        self._stop = stop
        self._beat = asyncio.get_running_loop().create_task(self._heartbeats(), name="workerctl-heartbeat")
        self._beat.add_done_callback(self._beat_ended)

    def _beat_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # a bug: say so, and stop (the supervisor restarts)
            logger.error("the heartbeat of worker process %d died", self.index, exc_info=task.exception())
            if self._stop is not None:
                self._stop.set()

    def attach(self, manager: Any) -> None:
        """The manager started: count its tasks, report it ready."""
        self._manager = manager
        manager.add_instrumentation(self._finished)

    def recycle(self, reason: str) -> None:
        """Stop gracefully so that the supervisor replaces this process."""
        if self._stop is None or self._stop.is_set():
            return
        self.recycled = reason
        logger.info("recycling worker process %d (pid %d): %s", self.index, os.getpid(), reason)
        self._stop.set()

    def check_memory(self) -> None:
        """Recycle once resident memory reaches ``--max-memory-per-child`` (after each task, and every beat)."""
        rss = rss_bytes()
        if self.max_memory is not None and rss >= self.max_memory:
            self.recycle(f"resident memory {rss // 2**20} MiB >= --max-memory-per-child {self.max_memory // 2**20} MiB")

    async def close(self) -> None:
        """Send the last heartbeat (the final counters) and stop heartbeating."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
        self._send()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    async def _heartbeats(self) -> None:
        while True:
            if self._parent != os.getppid() and self._stop is not None and not self._stop.is_set():
                logger.warning("the supervisor (pid %d) is gone: stopping gracefully", self._parent)
                self._stop.set()
            if self._manager is not None and self.max_memory is not None:
                self.check_memory()
            self._send()
            await asyncio.sleep(HEARTBEAT_S)

    def _send(self) -> None:
        manager = self._manager
        beat: dict[str, Any] = {
            "pid": os.getpid(),
            "ready": manager is not None and manager.running and not (self._stop is not None and self._stop.is_set()),
            "finished": self._finished.count,
            "rss": rss_bytes(),
        }
        if manager is not None:
            m = manager.metrics()
            beat["metrics"] = {k: getattr(m, k) for k in _COUNTERS}
        line = (json.dumps(beat, separators=(",", ":")) + "\n").encode()
        with contextlib.suppress(OSError):  # a full pipe (the supervisor is stopped) or a closed one: skip it
            os.write(self._fd, line)


#: The MetricsSnapshot fields a heartbeat carries (the supervisor sums them over its children).
_COUNTERS = ("scheduled", "running", "completed", "failed", "cancelled", "retried", "queue_depth")


def main() -> None:
    """The child's entry point: settings from stdin, then the node until it stops."""
    import faulthandler
    import signal

    import click
    from worker_core.errors import WorkerError

    from ._worker import WorkerOptions, run_node
    from ._worker_grpc import GrpcOptions

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints every thread's stack to stderr
    spec = json.loads(sys.stdin.read())
    with contextlib.suppress(OSError):
        sys.stdin.close()
    logging.basicConfig(
        level=getattr(logging, str(spec["log_level"]).upper()),
        format=f"%(asctime)s %(levelname)s %(name)s[{spec['index']}]: %(message)s",
    )
    fields = dict(spec["options"])
    fields["consume"] = tuple(fields["consume"])
    opts = WorkerOptions(grpc=GrpcOptions(), **fields)
    link = ChildLink(int(spec["fd"]), int(spec["index"]), spec["max_tasks"], spec["max_memory"], int(spec["parent"]))
    try:
        code = asyncio.run(run_node(opts, link))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except WorkerError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)
