"""Plain task functions in a pool of worker processes (``TaskManager(plain_runner="process")``): every core.

A pool process is a fresh interpreter from multiprocessing's *spawn* context (never a fork of a process that
holds an event loop, threads and sockets), started on first use and kept for the next function, one function at a
time. The function and its argument go to it pickled, and its return value (or what it raised) comes back
pickled: so the function must be importable by name (module level) and payloads and results picklable (a
decoded durable payload, a msgspec ``Struct``, plain data). The call waits on a thread of the manager's
:class:`~worker_core._runtime.threads.ThreadRunner`, so the event loop never blocks on a pipe.

- The function receives a :class:`ProcessContext`: a snapshot of the attempt's ``task_id``, ``attempt``,
  ``deadline`` and ``metadata``; its ``cancelled`` is never set. At a deadline (or a stop past its bound) the
  process is killed, which a thread cannot be, and a new one takes its place on next use.
- A pool process that dies (a segfault, ``os._exit``, the OOM killer) fails only the task it ran, with
  :class:`~worker_core.errors.WorkerProcessError`; the next task gets a new process.
- A job that cannot be pickled fails its task (the pickling error is the task's error); so does a result or an
  exception that cannot be pickled back (:class:`~worker_core.errors.WorkerProcessError` naming it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import multiprocessing
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_core.errors import WorkerProcessError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from .attempt import TaskContext
    from .threads import ThreadRunner

__all__ = ("ProcessContext", "ProcessRunner")


class ProcessContext:
    """What a plain function gets as ``ctx`` in a pool process: a snapshot of its attempt's context."""

    __slots__ = ("attempt", "cancelled", "deadline", "metadata", "task_id")

    def __init__(self, task_id: uuid.UUID, attempt: int, deadline: float | None, metadata: dict[str, str]) -> None:
        from .attempt import CancelEvent

        self.task_id = task_id
        self.attempt = attempt
        self.deadline = deadline  # time.monotonic(), the same clock in every process of one machine
        self.metadata = metadata
        self.cancelled = CancelEvent()  # never set here: a deadline kills the process instead

    @classmethod
    def of(cls, ctx: TaskContext) -> ProcessContext:
        """The snapshot of ``ctx``."""
        return cls(ctx.task_id, ctx.attempt, ctx.deadline, dict(ctx.task.metadata or {}))

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def __reduce__(self) -> tuple[Any, ...]:
        return (ProcessContext, (self.task_id, self.attempt, self.deadline, self.metadata))

    def __repr__(self) -> str:
        return f"ProcessContext(task_id={self.task_id}, attempt={self.attempt})"


def _serve(conn: Connection) -> None:
    """A pool process: run each ``(fn, arg)`` received, send back ``(ok, value)``, until ``None`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, arg = job
        try:
            out: tuple[bool, Any] = (True, fn(arg))
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the task's outcome
            out = (False, exc)
        try:
            conn.send(out)
        except Exception as exc:  # the result or the exception does not pickle
            what = "result" if out[0] else f"exception ({type(out[1]).__name__}: {out[1]})"
            conn.send((False, WorkerProcessError(f"the task's {what} could not be pickled: {exc!r}")))
        del job, fn, arg, out


class _Slot:
    """One pool process, possibly still starting; the lock orders a kill against a start on another thread."""

    __slots__ = ("conn", "dead", "lock", "process")

    def __init__(self) -> None:
        self.process: Any = None
        self.conn: Connection | None = None
        self.dead = False
        self.lock = threading.Lock()

    def call(self, job: tuple[Any, Any, Any]) -> tuple[bool, Any, bool]:
        """On a worker thread: start the process if needed, run ``(fn, arg)``; ``(ok, value, alive)``."""
        mp, fn, arg = job
        with self.lock:
            if self.dead:
                return False, WorkerProcessError("the attempt ended before its pool process started"), False
            if self.process is None:
                parent, child = mp.Pipe()
                self.process = mp.Process(target=_serve, args=(child,), daemon=True, name="worker-core-process")
                self.process.start()
                child.close()
                self.conn = parent
        conn = self.conn
        assert conn is not None
        try:
            conn.send((fn, arg))
        except Exception as exc:  # the function or its argument does not pickle: the task fails, the process is fine
            return False, exc, True
        try:
            ok, value = conn.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            code = self.process.exitcode
            return False, WorkerProcessError(f"the pool process running this task died (exit code {code})"), False
        return ok, value, True

    def kill(self) -> None:
        with self.lock:
            self.dead = True
            if self.process is not None and self.process.is_alive():
                self.process.kill()
            if self.conn is not None:
                self.conn.close()

    def close(self) -> None:
        """Ask an idle process to exit (it does once its pipe says so)."""
        with self.lock:
            self.dead = True
            if self.conn is not None:
                with contextlib.suppress(OSError):
                    self.conn.send(None)
                self.conn.close()


class ProcessRunner:
    """At most ``size`` pool processes, each running one plain function at a time for an awaiting attempt."""

    def __init__(self, size: int, threads: ThreadRunner) -> None:
        self.size = size
        self._threads = threads
        self._mp = multiprocessing.get_context("spawn")
        self._idle: list[_Slot] = []
        self._busy: set[_Slot] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.replaced = 0  # processes killed or dead, so far

    async def run(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``fn(arg)`` in a pool process; its return value, or what it raised, raised here."""
        slot = await self._acquire()
        alive = False
        try:
            ok, value, alive = await self._threads.run(slot.call, (self._mp, fn, arg), contextvars.Context())
        finally:  # cancelled (a deadline, a stop): the process is killed, its thread returns at the EOF
            self._release(slot, alive)
        if ok:
            return value
        raise value

    async def _acquire(self) -> _Slot:
        while not self._idle and len(self._busy) >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # handed a turn it will not take: pass it on
                raise
        slot = self._idle.pop() if self._idle else _Slot()
        self._busy.add(slot)
        return slot

    def _release(self, slot: _Slot, alive: bool) -> None:
        self._busy.discard(slot)
        if alive:
            self._idle.append(slot)
        else:
            self.replaced += 1
            slot.kill()
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Idle processes exit; busy ones (abandoned by a stop past its bound) are killed."""
        for slot in self._idle:
            slot.close()
        for slot in self._busy:
            slot.kill()
        self._idle.clear()
        self._busy.clear()
