"""A fault-test harness for durable backends: real worker processes, really killed, and their attempt logs.

:class:`FaultFleet` starts worker processes (``python -m worker_core.testing.fault_worker``) on one backend URL,
each appending an attempt log (see that module for the line format), and parses the logs into
:class:`LogRecord` values as they grow. Waits poll the logs (or any probe) until a condition holds, with a
timeout, never a bare sleep. :meth:`FaultFleet.kill` SIGKILLs a worker by pid and remembers when, so that
:func:`check_at_least_once` can tell the tasks a kill cut short (which must run again) from the others (which must
not). A backend author's fault test, in full::

    async def test_a_killed_worker_loses_nothing(tmp_path):
        with FaultFleet("mybackend://...", tmp_path, plugins=("my_backend.plugin",)) as fleet:
            first, _ = await fleet.spawn_ready(2)
            ids = await enqueue_work(...)          # DurableTask("work", ...) through the backend itself
            await fleet.wait_for(lambda: fleet.count("S", first) >= 50)
            fleet.kill(first)
            await fleet.wait_for(lambda: fleet.completed() >= ids, timeout=60)
        check_at_least_once(fleet, ids, redelivery_within=2.0)
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

__all__ = (
    "DeliveryReport",
    "FaultFleet",
    "FaultWorker",
    "LogRecord",
    "check_at_least_once",
    "check_exactly_once",
    "wait_until",
)

from .delivery import DeliveryReport, check_at_least_once, check_exactly_once

T = TypeVar("T")
Renewal = float | Literal["default"] | None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line of an attempt log.

    ``kind`` is ``READY``, ``S`` (started), ``D`` (done), ``K`` (killed itself), ``A`` (ack) or ``L`` (renewal
    found the lease lost). ``task_id`` is the task (or lease) id, empty for ``READY``; ``attempt`` the delivery
    number for ``S``/``D``/``K`` (0 otherwise); ``outcome`` is ``ok`` or ``lost`` for ``A`` (empty otherwise);
    ``pid`` is set for ``READY``; ``at`` is epoch seconds; ``worker`` the index of the process that wrote it.
    """

    kind: str
    task_id: str
    attempt: int
    at: float
    outcome: str = ""
    pid: int = 0
    worker: int = 0

    @classmethod
    def parse(cls, line: str, worker: int = 0) -> LogRecord | None:
        """The record of one log line, or ``None`` for a line that is not one."""
        parts = line.split()
        try:
            match parts:
                case ["READY", pid, at]:
                    return cls("READY", "", 0, float(at), pid=int(pid), worker=worker)
                case [("S" | "D" | "K") as kind, task_id, attempt, at]:
                    return cls(kind, task_id, int(attempt), float(at), worker=worker)
                case ["A", lease_id, ("ok" | "lost") as outcome, at]:
                    return cls("A", lease_id, 0, float(at), outcome=outcome, worker=worker)
                case ["L", lease_id, at]:
                    return cls("L", lease_id, 0, float(at), worker=worker)
        except ValueError:
            return None
        return None


@overload
async def wait_until(
    probe: Callable[[], Awaitable[T]],
    timeout: float = ...,  # noqa: ASYNC109
    *,
    every: float = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def wait_until(
    probe: Callable[[], T],
    timeout: float = ...,  # noqa: ASYNC109
    *,
    every: float = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


async def wait_until(
    probe: Callable[[], Any],
    timeout: float = 20.0,  # noqa: ASYNC109 - the timeout is the point of the helper
    *,
    every: float = 0.02,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy, and return that.

    Raises:
        AssertionError: not within ``timeout`` seconds; the message has the last value and ``describe()``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"; {describe()}" if describe is not None else ""
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r}){extra}")
        await asyncio.sleep(every)


@dataclass
class FaultWorker:
    """One worker process of a :class:`FaultFleet` and its attempt log (read incrementally)."""

    index: int
    log: Path
    process: subprocess.Popen[bytes]
    #: Epoch seconds of the SIGKILL :meth:`FaultFleet.kill` sent, or of the ``K`` line of a task that killed it.
    killed_at: float | None = None
    _records: list[LogRecord] = field(default_factory=list, repr=False)
    _offset: int = field(default=0, repr=False)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def records(self) -> list[LogRecord]:
        """Every complete line of the log so far, parsed (new lines are read on each call)."""
        try:
            with self.log.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self._records
        end = chunk.rfind(b"\n") + 1  # a line being written is read once it is complete
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            record = LogRecord.parse(line, self.index)
            if record is not None:
                self._records.append(record)
                if record.kind == "K" and self.killed_at is None:
                    self.killed_at = record.at
        self._offset += end
        return self._records

    def stderr(self, limit: int = 2000) -> str:
        """The end of what the process wrote to stderr (its warnings and tracebacks)."""
        path = self.log.with_suffix(".err")
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""


class FaultFleet:
    """Worker processes on one durable backend URL, started with :meth:`spawn`, stopped with :meth:`stop`.

    Args:
        url: The backend URL every worker opens (through the backend plugins).
        folder: Where the logs (``worker-N.log``) and stderr (``worker-N.err``) go.
        lease: Seconds of each lease.
        work_ms: Milliseconds each task works (a payload ``{"sleep": s}`` works ``s`` seconds).
        concurrency: ``max_workers`` of each worker's manager.
        renewal: Lease renewal interval: ``None`` a quarter of the lease; ``"default"`` the manager's own.
        poll: The manager's ``durable_poll_interval``.
        plugins: Plugin modules the workers register (``("worker_redis.plugin",)``); empty: every installed one.
        env: Extra environment variables for the workers.

    Attributes may be changed between spawns (``fleet.work_ms = 3000``): each spawn reads them.
    """

    def __init__(
        self,
        url: str,
        folder: Path,
        *,
        lease: float = 1.0,
        work_ms: int = 20,
        concurrency: int = 8,
        renewal: Renewal = None,
        poll: float = 0.05,
        plugins: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.folder = Path(folder)
        self.lease = lease
        self.work_ms = work_ms
        self.concurrency = concurrency
        self.renewal = renewal
        self.poll = poll
        self.plugins = tuple(plugins)
        self.env = dict(env or {})
        self.workers: list[FaultWorker] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- processes -----------------------------------------------------------------------------------

    def argv(self, log: Path) -> list[str]:
        """The command line of one worker writing to ``log``."""
        argv = [sys.executable, "-m", "worker_core.testing.fault_worker", self.url, str(log)]
        argv += ["--lease", str(self.lease), "--work-ms", str(self.work_ms), "--workers", str(self.concurrency)]
        argv += ["--poll", str(self.poll)]
        if self.renewal is not None:
            argv += ["--renewal", str(self.renewal)]
        for plugin in self.plugins:
            argv += ["--plugin", plugin]
        return argv

    def spawn(self) -> FaultWorker:
        """Start one more worker process (it logs ``READY`` once it runs: see :meth:`wait_ready`)."""
        index = len(self.workers)
        log = self.folder / f"worker-{index}.log"
        env = {**os.environ, **self.env}
        if self.plugins:
            env["WORKER_PLUGINS_AUTOLOAD"] = "0"
        with log.with_suffix(".err").open("wb") as err:
            process = subprocess.Popen(self.argv(log), stdout=subprocess.DEVNULL, stderr=err, env=env)
        worker = FaultWorker(index, log, process)
        self.workers.append(worker)
        return worker

    async def wait_ready(self, *workers: FaultWorker, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until each of ``workers`` logged ``READY``."""
        await self.wait_for(lambda: all(self.count("READY", w) for w in workers), timeout=timeout)

    async def spawn_ready(self, n: int = 1, timeout: float = 30.0) -> list[FaultWorker]:  # noqa: ASYNC109
        """Start ``n`` workers and wait until all of them run."""
        started = [self.spawn() for _ in range(n)]
        await self.wait_ready(*started, timeout=timeout)
        return started

    def kill(self, worker: FaultWorker) -> None:
        """SIGKILL ``worker`` by pid (nothing runs after it: no ack, no release) and reap it."""
        worker.killed_at = time.time()
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def terminate(self, worker: FaultWorker, timeout: float = 15.0) -> int:
        """SIGTERM ``worker`` (a graceful stop) and return its exit code."""
        self.signal(worker, signal.SIGCONT)
        self.signal(worker, signal.SIGTERM)
        return worker.process.wait(timeout=timeout)

    def signal(self, worker: FaultWorker, sig: int) -> None:
        """Send ``sig`` (``SIGSTOP``, ``SIGCONT``, ...) to ``worker`` if it still runs."""
        if worker.alive():
            os.kill(worker.pid, sig)

    def stop(self) -> None:
        """SIGTERM every live worker (resumed first if stopped), then SIGKILL whichever does not exit."""
        for worker in self.workers:
            self.signal(worker, signal.SIGCONT)
            self.signal(worker, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)

    async def supervise(
        self,
        done: Callable[[], object | Awaitable[object]],
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> None:
        """Restart a worker whenever none runs (what systemd or Kubernetes do) until ``done()`` is truthy."""

        async def probe() -> object:
            value = done()
            if inspect.isawaitable(value):
                value = await value
            if not value and not any(w.alive() for w in self.workers):
                self.spawn()
            return value

        await wait_until(probe, timeout, every=0.05, describe=self.describe)

    # -- the logs ------------------------------------------------------------------------------------

    def records(self, kind: str | None = None, worker: FaultWorker | None = None) -> list[LogRecord]:
        """The records of every worker (or of ``worker``), of one ``kind`` or all."""
        chosen = self.workers if worker is None else [worker]
        return [r for w in chosen for r in w.records() if kind is None or r.kind == kind]

    def count(self, kind: str, worker: FaultWorker | None = None) -> int:
        """How many ``kind`` lines the fleet (or ``worker``) logged."""
        return len(self.records(kind, worker))

    def completed(self) -> set[str]:
        """Ids of the tasks some worker finished (``D``)."""
        return {r.task_id for r in self.records("D")}

    def starts(self) -> dict[str, list[LogRecord]]:
        """Every ``S`` record, by task id, in log order per worker."""
        out: dict[str, list[LogRecord]] = defaultdict(list)
        for record in self.records("S"):
            out[record.task_id].append(record)
        return out

    def killed(self) -> list[FaultWorker]:
        """The workers that were SIGKILLed (by :meth:`kill` or by a task that killed its process)."""
        for worker in self.workers:
            worker.records()  # notices a K line
        return [w for w in self.workers if w.killed_at is not None]

    async def wait_for(self, condition: Callable[[], object], timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` (usually on the logs) is truthy; fail with each worker's state if not."""
        await wait_until(condition, timeout, describe=self.describe)

    def describe(self) -> str:
        """Each worker's pid, exit code and the end of its stderr: what a failed wait reports."""
        return "workers: " + "; ".join(
            f"#{w.index} pid {w.pid} exit {w.process.poll()} stderr {w.stderr(500)!r}" for w in self.workers
        )
