"""Per-attempt timeouts: one timer for every running attempt, instead of a timer each.

Attempts with the manager's default timeout (nearly all) start in loop-clock order, so their deadlines come
in order too: they wait in a FIFO lane (an append per attempt). Other timeouts share a heap. An attempt that
ends forgets its entry (the entry stays as a marker until it reaches the front, or until a compaction when
markers pile up behind a long-running attempt), so memory follows the attempts running now.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker_core.task import TaskContext

__all__ = ("Deadlines", "Watch")

_INF = float("inf")
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution
_SLACK = 256  # markers the lane or the heap may hold beyond twice the attempts watched, before compaction

#: One watched attempt: ``[deadline, ctx]`` in the lane, ``[deadline, seq, ctx]`` in the heap; ``ctx`` is
#: ``None`` once forgotten.
Watch = list[Any]


class Deadlines:
    """Calls ``on_expired(ctx)`` once the deadline of a watched attempt passes (loop clock)."""

    __slots__ = ("_at", "_default_s", "_heap", "_lane", "_loop", "_on_expired", "_seq", "_timer", "_watched")

    def __init__(self, default_timeout_s: float | None, on_expired: Callable[[TaskContext], None]) -> None:
        self._default_s = default_timeout_s
        self._on_expired = on_expired
        self._lane: deque[Watch] = deque()
        self._heap: list[Watch] = []
        self._seq = itertools.count()
        self._watched = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._at = _INF

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        """Forget every attempt and disarm the timer."""
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._at = _INF
        self._lane.clear()
        self._heap.clear()
        self._watched = 0

    def watch(self, ctx: TaskContext, timeout_s: float) -> Watch | None:
        """Watch ``ctx`` (its ``deadline`` is set, ``timeout_s`` after its start); the entry to :meth:`forget`."""
        if self._loop is None:
            return None
        deadline: float = ctx.deadline  # type: ignore[assignment]
        lane = self._lane
        self._watched += 1
        if timeout_s == self._default_s and (not lane or lane[-1][0] <= deadline):
            entry = [deadline, ctx]
            lane.append(entry)
            if len(lane) > 2 * self._watched + _SLACK:
                self._lane = deque(e for e in lane if e[1] is not None)
        else:
            entry = [deadline, next(self._seq), ctx]
            heap = self._heap
            heapq.heappush(heap, entry)
            if len(heap) > 2 * self._watched + _SLACK:
                heap[:] = [e for e in heap if e[2] is not None]
                heapq.heapify(heap)
        if deadline < self._at:
            self._arm(deadline)
        return entry

    def forget(self, entry: Watch) -> None:
        """The attempt ended: its deadline no longer matters."""
        if entry[-1] is not None:
            entry[-1] = None
            self._watched -= 1

    def _arm(self, when: float) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._at = _INF
        loop = self._loop
        if loop is None:
            return
        now = loop.time() + _CLOCK_RESOLUTION
        expired: list[TaskContext] = []
        lane = self._lane
        while lane and (lane[0][1] is None or lane[0][0] <= now):
            entry = lane.popleft()
            if entry[1] is not None:
                expired.append(entry[1])
                entry[1] = None
                self._watched -= 1
        heap = self._heap
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            entry = heapq.heappop(heap)
            if entry[2] is not None:
                expired.append(entry[2])
                entry[2] = None
                self._watched -= 1
        when = min(lane[0][0] if lane else _INF, heap[0][0] if heap else _INF)
        if when != _INF:
            self._arm(when)
        for ctx in expired:
            self._on_expired(ctx)
