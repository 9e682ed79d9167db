"""Fan-out of task results to subscribers, with a per-subscriber buffer and a drop policy."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import final

from .task import Result, Task

__all__ = ("DropPolicy", "ResultSubscription")


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
        self._items: deque[Task] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True once closed by :meth:`close` or by the manager stopping."""
        return self._closed

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

    async def __anext__(self) -> Result:
        while True:
            items = self._items
            if items:
                task = items.popleft()
                return Result(task, task._status, task._result, task._error)  # type: ignore[arg-type]
            if self._closed:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    def get_nowait(self) -> Result | None:
        """The next buffered result, or ``None`` when none is waiting."""
        return _result(self._items.popleft()) if self._items else None

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


def _result(task: Task) -> Result:
    return Result(task, task._status, task._result, task._error)  # type: ignore[arg-type]
