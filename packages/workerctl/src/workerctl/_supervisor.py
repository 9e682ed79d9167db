"""``workerctl worker APP --processes N``: a supervisor that runs N worker processes and replaces them.

Each worker process is a fresh interpreter running :func:`workerctl._child.main` (``subprocess``, no fork), in a
process group of its own (a terminal's Ctrl-C reaches only the supervisor, which decides what the children get).
The supervisor imports no app code and holds no connection: it starts, watches and signals processes.

- A child that exits :data:`~workerctl._child.RECYCLE_EXIT` (it reached a recycling limit and drained) is
  replaced at once.
- A child that dies any other way (a crash, SIGKILL, an exit while nobody asked it to stop) is restarted after
  0.5 s, doubling per crash still inside ``--restart-window`` (at most 30 s). More than ``--max-restarts``
  crashes within the window is a crash loop: the supervisor stops every child gracefully and exits 1 with
  ``Error: crash loop: ...``.
- The first SIGTERM/SIGINT sends SIGTERM to every child (each drains: nothing more leased, running tasks
  finish); a second sends SIGINT (each stops now: its leases expire and its tasks run again elsewhere). The
  supervisor exits once every child has: 0 when all drained, 1 when one hit ``--shutdown-timeout`` or died while
  draining, 130 after a second signal.
- Children heartbeat over a pipe; ``--health-listen`` serves their state (:mod:`workerctl._health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ._child import RECYCLE_EXIT
from ._connection import fail
from ._node_config import ProcessOptions
from ._worker import WorkerOptions

__all__ = ("ChildState", "NodeSupervisor")

logger = logging.getLogger("workerctl.supervisor")

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0
_STOP_NOW_EXIT = 130
#: Counters that keep growing across a child's replacement (the supervisor adds a dead child's last values).
CUMULATIVE = ("scheduled", "completed", "failed", "cancelled", "retried")


@dataclass(slots=True)
class ChildState:
    """One worker process as the supervisor sees it."""

    index: int
    proc: asyncio.subprocess.Process
    started: float  # time.monotonic()
    last_beat: float
    beat: dict[str, Any] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Its manager is up, connected and accepting (its last heartbeat said so)."""
        return bool(self.beat.get("ready"))


class NodeSupervisor:
    """Runs ``process.processes`` worker processes for ``opts`` until a signal, or a crash loop, stops them."""

    def __init__(self, opts: WorkerOptions, process: ProcessOptions, log_level: str) -> None:
        self.opts = opts
        self.process = process
        self.log_level = log_level
        self.children: dict[int, ChildState | None] = dict.fromkeys(range(process.processes))
        self.retired: dict[str, int] = dict.fromkeys(CUMULATIVE, 0)
        self.restarts = 0
        self.stopping = False
        self._stop = asyncio.Event()
        self._forced = False
        self._failure: str | None = None
        self._crashes: deque[float] = deque(maxlen=process.max_restarts + 1)
        self._final: list[int] = []

    # ---------------------------------------------------------------------------------------------- run

    async def run(self) -> int:
        """Start the children (and the health server), wait until every child has exited; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        health = None
        try:
            if self.process.health_listen:
                from ._health import HealthServer

                health = HealthServer(self, self.process.health_listen)
                await health.start()
            logger.info(
                "supervisor started: pid=%d processes=%d max_tasks_per_child=%s max_memory_per_child=%s health=%s",
                os.getpid(),
                self.process.processes,
                self.process.max_tasks_per_child or "off",
                self.process.max_memory_per_child or "off",
                health.address if health is not None else "off",
            )
            await asyncio.gather(*(self._slot(i) for i in self.children))
        finally:
            if health is not None:
                await health.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self._failure is not None:
            raise fail(self._failure)
        if self._forced:
            return _STOP_NOW_EXIT
        # -SIGTERM: our SIGTERM reached a child outside its handlers (starting, or past its stop): nothing ran.
        if any(code not in (0, RECYCLE_EXIT, -signal.SIGTERM) for code in self._final):
            return 1
        logger.info("supervisor stopped: every worker process drained")
        return 0

    def _on_signal(self) -> None:
        if not self.stopping:
            logger.info(
                "stopping gracefully: SIGTERM to %d worker processes (send the signal again to stop now)",
                self._live_count(),
            )
            self._begin_stop()
        elif not self._forced:
            self._forced = True
            logger.warning("stopping now: SIGINT to every worker process (their running tasks are cancelled)")
            self._signal_all(signal.SIGINT)

    def _begin_stop(self) -> None:
        self.stopping = True
        self._stop.set()
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        for child in self.children.values():
            if child is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)

    def _live_count(self) -> int:
        return sum(1 for c in self.children.values() if c is not None and c.proc.returncode is None)

    # ---------------------------------------------------------------------------------------------- slots

    async def _slot(self, index: int) -> None:
        """Keep one worker process running in slot ``index`` until the node stops."""
        while not self._stop.is_set():
            child = await self._spawn(index)
            if child is None:
                return
            code = await child.proc.wait()
            if child.reader is not None:  # the pipe's EOF: every heartbeat read, the last one included
                done, _ = await asyncio.wait({child.reader}, timeout=5.0)
                if not done:  # something the child started still holds the pipe: stop reading it
                    child.reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await child.reader
            self._retire(child)
            if self._stop.is_set():
                self._final.append(code)
                return
            pid = child.proc.pid
            if code == RECYCLE_EXIT:
                self.restarts += 1
                logger.info("worker process %d (pid %d) recycled; starting its replacement", index, pid)
                continue
            how = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
            now = time.monotonic()
            self._crashes.append(now)
            recent = sum(1 for t in self._crashes if now - t <= self.process.restart_window)
            if recent > self.process.max_restarts:
                self._failure = (
                    f"crash loop: worker processes crashed {recent} times within {self.process.restart_window:g}s "
                    f"(last: process {index}, pid {pid}, {how}); stopping the node (see the log above for why)"
                )
                logger.error("%s", self._failure)
                self._final.append(code)
                self._begin_stop()
                return
            delay = min(_BACKOFF_MAX_S, _BACKOFF_MIN_S * 2 ** (recent - 1))
            logger.error("worker process %d (pid %d) died (%s); restarting it in %.1fs", index, pid, how, delay)
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _spawn(self, index: int) -> ChildState | None:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        spec = {
            "index": index,
            "parent": os.getpid(),
            "fd": write_fd,
            "log_level": self.log_level,
            "max_tasks": self.process.max_tasks_per_child,
            "max_memory": self.process.max_memory_per_child,
            "options": {k: v for k, v in asdict(self.opts).items() if k != "grpc"},
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from workerctl._child import main; main()",
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
                process_group=0,
            )
        except OSError as exc:
            os.close(read_fd)
            self._failure = f"cannot start a worker process: {exc}"
            self._begin_stop()
            return None
        finally:
            os.close(write_fd)
        now = time.monotonic()
        child = ChildState(index=index, proc=proc, started=now, last_beat=now)
        self.children[index] = child
        reader = asyncio.StreamReader(limit=1 << 20)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        child.reader = loop.create_task(self._read(child, reader, transport), name=f"workerctl-child-{index}")
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(spec).encode())
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: its exit code tells the slot loop
        if self.stopping:  # a signal arrived while it started: it gets one too
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        logger.info("worker process %d started (pid %d)", index, proc.pid)
        return child

    async def _read(self, child: ChildState, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):  # an oversized line: not a heartbeat
                    continue
                if not line:
                    return
                try:
                    beat = json.loads(line)
                except ValueError:
                    continue
                if isinstance(beat, dict):
                    child.beat = beat
                    child.last_beat = time.monotonic()
        finally:
            transport.close()

    def _retire(self, child: ChildState) -> None:
        """Keep a dead child's counters (so the node's totals never go down) and free its slot."""
        metrics = child.beat.get("metrics") or {}
        for key in CUMULATIVE:
            self.retired[key] += int(metrics.get(key, 0))
        if self.children.get(child.index) is child:
            self.children[child.index] = None

    # ---------------------------------------------------------------------------------------------- state

    def liveness(self) -> tuple[bool, list[dict[str, Any]]]:
        """Every running child heartbeat within ``--heartbeat-timeout`` (a slot being restarted counts as live)."""
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        ok = True
        for index, child in self.children.items():
            if child is None or child.proc.returncode is not None:
                rows.append({"index": index, "state": "restarting"})
                continue
            age = now - child.last_beat
            live = age <= self.process.heartbeat_timeout
            ok = ok and live
            rows.append({"index": index, "pid": child.proc.pid, "live": live, "heartbeat_age_s": round(age, 3)})
        return ok, rows

    def readiness(self) -> tuple[bool, list[dict[str, Any]]]:
        """Not stopping, and every slot's child connected to its backend and accepting work."""
        rows = [
            {"index": i, "ready": c is not None and c.ready, **({"pid": c.proc.pid} if c is not None else {})}
            for i, c in self.children.items()
        ]
        return (not self.stopping and all(row["ready"] for row in rows)), rows

    def totals(self) -> dict[str, int]:
        """The node's counters: the live children's plus, for the cumulative ones, every dead child's."""
        out = dict(self.retired)
        out.update(running=0, queue_depth=0)
        for child in self.children.values():
            if child is None:
                continue
            for key, value in (child.beat.get("metrics") or {}).items():
                if key in out:
                    out[key] += int(value)
        return out
