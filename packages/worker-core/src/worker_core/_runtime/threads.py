"""Plain task functions run here: daemon threads started as needed and reused, one function at a time each.

Why not ``ThreadPoolExecutor``: a thread cannot be interrupted, so a timed-out or cancelled plain function may
keep running after its attempt ended. The executor would keep counting that thread against its size (starving
later tasks), and it joins every thread at interpreter exit and in ``shutdown(wait=True)`` (a stuck function
would hang the process, or block the event loop). Here a thread whose function nobody waits for any more is
*abandoned*: counted, no longer part of any attempt, free to finish (or to die with the process: the threads
are daemons). A new thread is started whenever none is idle, so abandoned threads never take a worker's place.
Whatever the function raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is handed back to the attempt
as its outcome; it never reaches the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ("ThreadRunner",)

logger = logging.getLogger("worker_core.manager")

_IDLE_EXIT_S = 30.0  # an idle thread exits after this long without work


class _Job:
    __slots__ = ("abandoned", "arg", "context", "done", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[tuple[bool, Any]],
    ) -> None:
        self.fn = fn
        self.arg = arg
        self.context = context
        self.loop = loop
        self.future = future
        self.done = False
        self.abandoned = False


class ThreadRunner:
    """Runs ``fn(arg)`` on a worker thread for an awaiting attempt; counts threads left running by their attempt."""

    def __init__(self, name: str = "worker-core-task") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job (minus jobs handed to them and not yet taken)
        self._threads = 0  # threads alive
        self._abandoned = 0  # threads running a function whose attempt stopped waiting for it
        self._serial = 0
        self._closed = False

    @property
    def abandoned(self) -> int:
        """Threads still running a function that its attempt gave up on (a timeout, a stop past its bound)."""
        return self._abandoned

    @property
    def threads(self) -> int:
        """Threads alive (idle, busy and abandoned)."""
        return self._threads

    async def run(self, fn: Callable[[Any], Any], arg: Any, context: contextvars.Context) -> Any:
        """``context.run(fn, arg)`` on a worker thread; its return value, or what it raised, raised here.

        When the awaiting task is cancelled, the thread is abandoned (counted until the function returns) and
        the cancellation propagates at once.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        job = _Job(fn, arg, context, loop, future)
        self._submit(job)
        try:
            ok, value = await future
        except asyncio.CancelledError:
            with self._lock:
                if not job.done:
                    job.abandoned = True
                    self._abandoned += 1
            raise
        if ok:
            return value
        raise value

    def _submit(self, job: _Job) -> None:
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self._threads += 1
                self._serial += 1
                name = f"{self._name}-{self._serial}"
            else:
                self._idle -= 1  # that idle thread takes this job
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            try:
                job = jobs.get(timeout=_IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody handed this thread a job: exit
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue  # a job is on its way to this thread
            if job is None:  # close(): exit
                with self._lock:
                    self._threads -= 1
                return
            try:
                value = job.context.run(job.fn, job.arg)
                ok = True
            except BaseException as exc:  # SystemExit, KeyboardInterrupt included: the attempt's outcome
                value, ok = exc, False
            with self._lock:
                job.done = True
                abandoned = job.abandoned
                if abandoned:
                    self._abandoned -= 1
                if self._closed:
                    self._threads -= 1
                else:
                    self._idle += 1
            if not abandoned:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                    job.loop.call_soon_threadsafe(_deliver, job.future, ok, value)
            del job, value
            if self._closed:
                return

    def close(self) -> None:
        """Idle threads exit now, busy ones once their function returns (never waits)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)


def _deliver(future: asyncio.Future[tuple[bool, Any]], ok: bool, value: Any) -> None:
    if not future.done():
        future.set_result((ok, value))
