"""A task manager for code with no event loop: a Django or Flask view, a script, a Jupyter cell.

:class:`BlockingManager` runs a :class:`~worker_core.TaskManager` on an event loop in a background thread
that it owns, and gives blocking twins of the async API. Any number of threads may use one at once (every
call is handed to the loop with :func:`asyncio.run_coroutine_threadsafe`). It starts on first use and
closes at :meth:`close`, at the end of a ``with`` block, or at interpreter exit (a graceful stop bounded by
``stop_timeout``)::

    tasks = BlockingManager(max_workers=4)
    handle = tasks.submit(send_email, "a@example.org")
    handle.result(timeout=10)
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from types import TracebackType
from typing import Any, Generic, ParamSpec, Self, TypeVar, Unpack, final, overload

from .errors import ManagerStoppedError, WorkerError
from .handles import TaskHandle
from .manager import TaskManager
from .options import DEFAULT_STOP_TIMEOUT, config_seconds
from .status import TaskStatus
from .submit import SubmitOptions, checked_options
from .task import Task

__all__ = ("BlockingHandle", "BlockingManager", "BlockingSubmitter")

P = ParamSpec("P")
T = TypeVar("T")


@final
class BlockingHandle(Generic[T]):
    """The blocking twin of :class:`~worker_core.TaskHandle`: ``result()`` waits in the calling thread."""

    __slots__ = ("_handle", "_owner")

    def __init__(self, owner: BlockingManager, handle: TaskHandle[T]) -> None:
        self._owner = owner
        self._handle = handle

    @property
    def id(self) -> uuid.UUID:
        """The task id."""
        return self._handle.id

    @property
    def status(self) -> TaskStatus | None:
        """The task's status now."""
        return self._handle.status

    def done(self) -> bool:
        """Whether the task reached a terminal status."""
        return self._handle.done()

    def result(self, timeout: float | timedelta | None = None) -> T:
        """Block until the task finishes (at most ``timeout`` seconds); its result, or its error raised.

        Raises:
            TimeoutError: ``timeout`` passed first (the task goes on).
        """
        return self._owner.run(self._handle.result(timeout))

    def cancel(self) -> bool:
        """Cancel the task; False when it had already finished."""
        return self._owner.run(self._handle.cancel())

    def __repr__(self) -> str:
        return f"Blocking{self._handle!r}"


@final
class BlockingSubmitter:
    """``BlockingManager.with_options(...)``: submits with these options."""

    __slots__ = ("_options", "_owner")

    def __init__(self, owner: BlockingManager, options: SubmitOptions) -> None:
        self._owner = owner
        self._options = options

    def with_options(self, **options: Unpack[SubmitOptions]) -> BlockingSubmitter:
        """A submitter with ``options`` over these ones."""
        merged: SubmitOptions = {**self._options, **options}
        checked_options(merged, "with_options")
        return BlockingSubmitter(self._owner, merged)

    @overload
    def submit(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[T]: ...

    def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[Any]:
        """Run ``fn(*args, **kwargs)`` as a task with these options; its blocking handle."""
        owner = self._owner
        submitter = owner.manager.with_options(**self._options)
        return BlockingHandle(owner, owner.run(submitter.submit(fn, *args, **kwargs)))


@final
class BlockingManager:
    """A :class:`~worker_core.TaskManager` on a background event-loop thread, used from ordinary threads.

    Args:
        factory: Builds the manager (called on the loop thread). Default: ``TaskManager(**options)``.
        stop_timeout: Seconds :meth:`close` (and interpreter exit) lets queued and running tasks finish
            before cancelling what is left.
        **options: ``TaskManager`` arguments, when no ``factory`` is given.

    Raises (from every method):
        WorkerError: called from the manager's own loop thread (from inside one of its tasks): that would
            wait for itself; ``await`` the manager's own API there instead.
        ManagerStoppedError: used after :meth:`close`.
    """

    def __init__(
        self,
        factory: Callable[[], TaskManager] | None = None,
        *,
        stop_timeout: float | timedelta = DEFAULT_STOP_TIMEOUT,
        **options: Any,
    ) -> None:
        if factory is not None and options:
            raise TypeError("give a factory or TaskManager options, not both")
        self._factory: Callable[[], TaskManager] = factory if factory is not None else lambda: TaskManager(**options)
        self._stop_timeout = config_seconds(stop_timeout, "stop_timeout", allow_zero=True)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._manager: TaskManager | None = None
        self._closed = False

    # --------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the loop thread and the manager (done by the first call of anything else too).

        Raises:
            ManagerStoppedError: the manager was closed.
            Exception: what the manager's ``start()`` raised (a durable backend that cannot be reached).
        """
        with self._lock:
            if self._closed:
                raise ManagerStoppedError("the blocking manager is closed")
            if self._manager is not None:
                return
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_serve, args=(loop,), name="worker-core-loop", daemon=True)
            thread.start()
            try:
                manager = asyncio.run_coroutine_threadsafe(_started(self._factory), loop).result()
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                loop.close()
                raise
            self._loop, self._thread, self._manager = loop, thread, manager
            _OPEN.add(self)

    def close(self, timeout: float | timedelta | None = None) -> None:
        """Stop the manager gracefully (up to ``timeout``, default ``stop_timeout``), then the loop thread.

        Idempotent; past the bound what is left is cancelled, as ``stop_graceful`` does.
        """
        bound_s = config_seconds(timeout, "timeout", allow_zero=True)
        self._check_thread()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread, manager = self._loop, self._thread, self._manager
        _OPEN.discard(self)
        if loop is None or thread is None or manager is None:
            return
        try:
            future = asyncio.run_coroutine_threadsafe(
                _stopped(manager, self._stop_timeout if bound_s is None else bound_s), loop
            )
            future.result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ the API

    @property
    def manager(self) -> TaskManager:
        """The manager itself: use it only in coroutines handed to :meth:`run` (it lives on the loop thread)."""
        return self._ready()[1]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the manager's loop and block until it returns (or raises).

        The way to the rest of the API: ``blocking.run(blocking.manager.register_durable_task(task))``.
        """
        try:
            self._check_thread()
            loop, _ = self._ready()
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @overload
    def submit(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[T]: ...

    @overload
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[T]: ...

    def submit(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> BlockingHandle[Any]:
        """Run ``fn(*args, **kwargs)`` as a task (see ``TaskManager.submit``); its blocking handle."""
        return BlockingHandle(self, self.run(self.manager.submit(fn, *args, **kwargs)))

    def with_options(self, **options: Unpack[SubmitOptions]) -> BlockingSubmitter:
        """A submitter giving tasks ``options`` (see ``TaskManager.with_options``)."""
        checked_options(options, "with_options")
        return BlockingSubmitter(self, options)

    def register_task(self, task: Task[Any]) -> uuid.UUID:
        """``TaskManager.register_task``, blocking."""
        return self.run(self._ready()[1].register_task(task))

    def handle(self, task_id: uuid.UUID) -> BlockingHandle[Any]:
        """A blocking handle on the task with this id (see ``TaskManager.handle``)."""
        return BlockingHandle(self, self._ready()[1].handle(task_id))

    def wait(self, timeout: float | timedelta | None = None) -> None:
        """``TaskManager.wait``, blocking."""
        self.run(self._ready()[1].wait(timeout))

    def _ready(self) -> tuple[asyncio.AbstractEventLoop, TaskManager]:
        if self._manager is None:
            self.start()
        loop, manager = self._loop, self._manager
        if self._closed or loop is None or manager is None:
            raise ManagerStoppedError("the blocking manager is closed")
        return loop, manager

    def _check_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise WorkerError("BlockingManager used from its own loop thread: await the manager's API there")

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._manager is not None else "not started")
        return f"BlockingManager({state})"


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())


async def _started(factory: Callable[[], TaskManager]) -> TaskManager:
    manager = factory()
    await manager.start()
    return manager


async def _stopped(manager: TaskManager, bound_s: float | None) -> None:
    with contextlib.suppress(TimeoutError):  # past the bound what was left is cancelled; it is stopped
        await manager.stop_graceful(bound_s)


#: Blocking managers started and not closed yet: closed at interpreter exit (weakly held: one dropped
#: without close() is not kept alive by this).
_OPEN: weakref.WeakSet[BlockingManager] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for blocking in list(_OPEN):
        with contextlib.suppress(concurrent.futures.CancelledError, RuntimeError):  # its loop went away first
            blocking.close()
