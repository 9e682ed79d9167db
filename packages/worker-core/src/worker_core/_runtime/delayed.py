"""Tasks whose ``run_at`` lies ahead: a heap by due time, from which a cancelled task is removed at once.

Removal keeps a marker in the heap (the task itself is dropped, so its memory goes), and the heap is compacted
when markers outnumber the tasks waiting.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from worker_core import task as records

if TYPE_CHECKING:
    from worker_core.task import Task

__all__ = ("DelayedTasks",)

_key = records.key
_STALE_SLACK = 64  # markers the heap may hold beyond twice the tasks waiting, before it is compacted


class DelayedTasks:
    """Tasks whose ``run_at`` is ahead, earliest first, then by id; removal drops the task at once."""

    __slots__ = ("_entries", "_heap", "size")

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []  # [due, key, task or None once removed]
        self._entries: dict[int, list[Any]] = {}  # live entries by task key
        self.size = 0

    def push(self, task: Task[Any], due: float) -> None:
        """Hold ``task`` until the loop clock reaches ``due``."""
        key = _key(task)
        entry = [due, key, task]
        self._entries[key] = entry
        heapq.heappush(self._heap, entry)
        self.size += 1

    def next_due(self) -> float | None:
        """The earliest due time of a waiting task, or ``None``."""
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Task[Any]]:
        """Remove and return every task due at ``now`` or earlier."""
        heap = self._heap
        due: list[Task[Any]] = []
        while heap and heap[0][0] <= now:
            _, key, task = heapq.heappop(heap)
            if task is not None:
                del self._entries[key]
                self.size -= 1
                due.append(task)
        return due

    def remove(self, task: Task[Any]) -> bool:
        """Take ``task`` out; True when it was here."""
        entry = self._entries.pop(_key(task), None)
        if entry is None:
            return False
        entry[2] = None  # the heap keeps a marker, not the task
        self.size -= 1
        heap = self._heap
        if len(heap) > 2 * self.size + _STALE_SLACK:
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
        return True

    def drain(self) -> list[Task[Any]]:
        """Remove and return every delayed task."""
        tasks = [entry[2] for entry in self._entries.values()]
        self._entries.clear()
        self._heap.clear()
        self.size = 0
        return tasks
