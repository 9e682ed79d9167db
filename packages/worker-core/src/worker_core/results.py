"""Results: the :class:`Result` of a task, and the bus that fans every finished task out to subscriptions.

Publishing never blocks and never awaits: a full buffer loses a result (the new one, or the oldest with
:attr:`DropPolicy.DROP_OLDEST`) and every loss is counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import Any, Generic, TypeVar, final

from . import task as records
from .errors import ConfigurationError
from .status import TERMINAL_STATUSES, TaskStatus
from .task import Task

__all__ = ("DropPolicy", "Result", "ResultBus", "ResultSubscription")


T = TypeVar("T")


@final
class Result(Generic[T]):
    """The outcome of one task, published once when it reaches a terminal status.

    Attributes:
        task: The task.
        status: Its terminal status.
        result: What ``execute`` returned (``None`` unless ``COMPLETED``).
        error: The exception it ended with, or ``None``.
    """

    __slots__ = ("error", "result", "status", "task")

    def __init__(
        self, task: Task[T], status: TaskStatus, result: T | None = None, error: BaseException | None = None
    ) -> None:
        self.task = task
        self.status = status
        self.result = result
        self.error = error

    @classmethod
    def of(cls, task: Task[T]) -> Result[T]:
        """The result of a finished ``task``."""
        status = records.status(task)
        assert status is not None
        return cls(task, status, task.result, task.error)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (self.task, self.status, self.result, self.error) == (
            other.task,
            other.status,
            other.result,
            other.error,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Result(task={self.task!r}, status={self.status.value}, result={self.result!r}, error={self.error!r})"

    def __str__(self) -> str:
        return f"Task: {self.task.id}, Status: {self.status.value}, Result: {self.result!r}, Error: {self.error!r}"


class DropPolicy(StrEnum):
    """What a full subscriber buffer does with a new result; every dropped result is counted."""

    DROP_NEWEST = "drop_newest"
    """Keep what is buffered and drop the new result (the default)."""
    DROP_OLDEST = "drop_oldest"
    """Evict the oldest buffered result to make room for the new one."""


@final
class ResultSubscription:
    """Results published after subscribing, as an async iterator; ``close()`` (or ``with``) ends it.

    Publishing never blocks: when ``buffer`` results are waiting, the manager's drop policy decides
    which one is lost (and counts it). Iteration ends after the manager stops and the buffer is drained,
    or at once after :meth:`close`.
    """

    __slots__ = ("_buffer", "_closed", "_items", "_on_close", "_waiter")

    def __init__(self, buffer: int, on_close: Callable[[ResultSubscription], None]) -> None:
        self._buffer = buffer
        # Finished tasks; each Result is built when taken (a task's outcome never changes once terminal).
        self._items: deque[Task[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True once closed by :meth:`close` or by the manager stopping."""
        return self._closed

    def _offer(self, task: Task[Any], drop_oldest: bool) -> bool:
        """Buffer ``task``'s result; False when one result (this or the oldest) was dropped."""
        items = self._items
        kept = True
        if len(items) >= self._buffer:
            kept = False
            if not drop_oldest:
                return False
            items.popleft()
        items.append(task)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return kept

    def _finish(self) -> None:
        """The manager stopped: end iteration once the buffer is drained."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def close(self) -> None:
        """Unsubscribe and drop anything buffered; idempotent."""
        if not self._closed:
            self._on_close(self)
        self._items.clear()
        self._finish()

    def __aiter__(self) -> ResultSubscription:
        return self

    async def __anext__(self) -> Result[Any]:
        while True:
            items = self._items
            if items:
                return Result.of(items.popleft())
            if self._closed:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def get_nowait(self) -> Result[Any] | None:
        """The next buffered result, or ``None`` when none is waiting."""
        return Result.of(self._items.popleft()) if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def __enter__(self) -> ResultSubscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> ResultSubscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@final
class ResultBus:
    """Every finished task goes to every open subscription; counts what full buffers dropped."""

    __slots__ = ("_closed", "_on_dropped", "_subscriptions", "_watchers", "drop_oldest", "dropped")

    def __init__(self, on_dropped: Callable[[int], None]) -> None:
        self._subscriptions: list[ResultSubscription] = []
        # Futures of callers awaiting one task (task handles), by task key; an entry lives while one waits.
        self._watchers: dict[int, list[asyncio.Future[None]]] = {}
        self._closed = False
        self._on_dropped = on_dropped
        self.drop_oldest = False
        self.dropped = 0

    def set_drop_policy(self, policy: DropPolicy) -> None:
        """What a full subscriber buffer drops from now on.

        Raises:
            ConfigurationError: ``policy`` is not a :class:`DropPolicy`.
        """
        if not isinstance(policy, DropPolicy):
            raise ConfigurationError(f"policy must be a DropPolicy, got {policy!r}")
        self.drop_oldest = policy is DropPolicy.DROP_OLDEST

    async def finished(self, task: Task[Any], timeout_s: float | None) -> bool:
        """Return once ``task`` is terminal (True) or the manager stopped first (False).

        Raises:
            TimeoutError: ``timeout_s`` passed first.
        """
        if records.status(task) in TERMINAL_STATUSES:
            return True
        if self._closed:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = records.key(task)
        watchers = self._watchers
        waiting = watchers.get(key)
        if waiting is None:
            waiting = watchers[key] = []
        waiting.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        finally:
            waiting = watchers.get(key)
            if waiting is not None and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del watchers[key]
        return records.status(task) in TERMINAL_STATUSES

    def subscribe(self, buffer: int, *, closed: bool) -> ResultSubscription:
        """A new subscription (already finished when ``closed``: the manager has stopped)."""
        subscription = ResultSubscription(buffer, self._unsubscribe)
        if closed:
            subscription._finish()
        else:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: ResultSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, task: Task[Any]) -> None:
        """Wake the callers awaiting ``task``; offer it to every subscription."""
        if self._watchers:
            waiting = self._watchers.pop(records.key(task), None)
            if waiting is not None:
                _wake(waiting)
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        dropped = 0
        drop_oldest = self.drop_oldest
        for subscription in subscriptions:
            if not subscription._offer(task, drop_oldest):
                dropped += 1
        if dropped:
            self.dropped += dropped
            self._on_dropped(dropped)

    def close(self) -> None:
        """The manager stopped: every subscription ends once drained; callers awaiting a task are woken."""
        self._closed = True
        watchers, self._watchers = self._watchers, {}
        for waiting in watchers.values():
            _wake(waiting)
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription._finish()


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
