"""The ready queues (priority heaps shared out by weighted round robin) and the delayed heap.

Entries are removed lazily: a task that leaves a heap early (cancelled, run by ``execute_task``) gets
``task._entry = None`` and its entry is skipped when it reaches the top. Counters are kept exact at
once, so ``max_tasks`` and ``queue_depth`` never see stale entries.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import Task

__all__ = ("PRIORITY_MAX", "PRIORITY_MIN", "DelayedHeap", "ReadyScheduler", "sort_key")

# A queue is a heap of packed sort keys (plain ints) plus a dict key -> task. The key packs, from the
# most significant bits down: priority (offset to be unsigned; lower first), 2**63 - weight (higher
# weight first), and the id as a 128-bit int (the canonical id string ascending is the int ascending:
# fixed-width lowercase hex). One int comparison per heap level, on ints allocated one after another,
# keeps pops fast with millions of entries; removing a task is a dict pop (the heap entry goes stale).
_PRIORITY_OFFSET = 1 << 63
_WEIGHT_LIMIT = (1 << 63) - 1
PRIORITY_MIN = -(1 << 63)
PRIORITY_MAX = (1 << 63) - 1


def sort_key(priority: int, weight: int, key: int) -> int:
    """The packed heap key; ``priority`` must lie in int64 and ``weight`` >= 1."""
    return ((priority + _PRIORITY_OFFSET) << 192) | ((_WEIGHT_LIMIT - min(weight, _WEIGHT_LIMIT)) << 128) | key


class _Queue:
    __slots__ = ("heap", "quantum", "tasks", "weight")

    def __init__(self, weight: int) -> None:
        self.heap: list[int] = []
        self.tasks: dict[int, Task] = {}
        self.quantum = 0
        self.weight = weight


class ReadyScheduler:
    """Per-queue priority heaps served by plain weighted round robin (go-worker's queue_scheduler).

    Queue names are kept sorted; a cursor persists across pops. A queue with quantum 0 is refilled to its
    weight and serves up to ``weight`` tasks in a row before the cursor moves on.
    """

    __slots__ = ("_cursor", "_names", "_queues", "_weights", "size")

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = dict(weights)
        self._queues: dict[str, _Queue] = {}
        self._names: list[str] = []
        self._cursor = 0
        self.size = 0

    def push(self, task: Task) -> None:
        """Make ``task`` ready in its queue (``task.queue`` is already normalised)."""
        queue = self._queues.get(task.queue)
        if queue is None:
            queue = self._add_queue(task.queue)
        key = ((task.priority + _PRIORITY_OFFSET) << 192) | ((_WEIGHT_LIMIT - min(task.weight, _WEIGHT_LIMIT)) << 128)
        key |= task._key
        task._entry = key
        queue.tasks[key] = task
        heapq.heappush(queue.heap, key)
        self.size += 1

    def _add_queue(self, name: str) -> _Queue:
        weight = self._weights.get(name, 1)
        queue = self._queues[name] = _Queue(weight if weight > 0 else 1)
        bisect.insort(self._names, name)
        return queue

    def pop(self) -> Task | None:
        """Take the next task by weighted round robin, or ``None`` when nothing is ready."""
        if not self.size:
            return None
        names = self._names
        count = len(names)
        queues = self._queues
        for _ in range(count):
            queue = queues[names[self._cursor]]
            tasks = queue.tasks
            if not tasks:
                queue.quantum = 0
                queue.heap.clear()
                self._cursor = (self._cursor + 1) % count
                continue
            if not queue.quantum:
                queue.quantum = queue.weight
            heap = queue.heap
            task = None
            while task is None:
                task = tasks.pop(heapq.heappop(heap), None)
            task._entry = None
            self.size -= 1
            queue.quantum -= 1
            if not queue.quantum:
                self._cursor = (self._cursor + 1) % count
            return task
        return None  # pragma: no cover - size > 0 guarantees a live entry

    def remove(self, task: Task) -> bool:
        """Take ``task`` out of its queue if it is there; True when it was."""
        key = task._entry
        if not isinstance(key, int):
            return False
        queue = self._queues[task.queue]
        if queue.tasks.pop(key, None) is None:
            return False
        task._entry = None
        self.size -= 1
        if not queue.tasks:
            queue.quantum = 0
            queue.heap.clear()
        return True

    def depths(self) -> dict[str, int]:
        """Ready tasks per queue."""
        return {name: len(q.tasks) for name, q in self._queues.items()}

    def drain(self) -> list[Task]:
        """Remove and return every ready task."""
        tasks = [task for q in self._queues.values() for task in q.tasks.values()]
        for task in tasks:
            task._entry = None
        for queue in self._queues.values():
            queue.heap.clear()
            queue.tasks.clear()
            queue.quantum = 0
        self.size = 0
        return tasks


# Delayed entry: (due time on the loop clock, id as int, task).
_Delayed = tuple[float, int, "Task"]


class DelayedHeap:
    """Tasks whose ``run_at`` is in the future, earliest first, then by id."""

    __slots__ = ("_heap", "size")

    def __init__(self) -> None:
        self._heap: list[_Delayed] = []
        self.size = 0

    def push(self, task: Task, due: float) -> None:
        """Hold ``task`` until the loop clock reaches ``due``."""
        entry: _Delayed = (due, task._key, task)
        task._entry = entry
        heapq.heappush(self._heap, entry)
        self.size += 1

    def next_due(self) -> float | None:
        """The earliest due time of a live entry, or ``None``."""
        heap = self._heap
        while heap and heap[0][2]._entry is not heap[0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Task]:
        """Remove and return every live task due at ``now`` or earlier."""
        heap = self._heap
        due: list[Task] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            task = entry[2]
            if task._entry is entry:
                task._entry = None
                self.size -= 1
                due.append(task)
        return due

    def remove(self, task: Task) -> bool:
        """Take ``task`` out (lazily); True when it was there."""
        entry: Any = task._entry
        if not isinstance(entry, tuple):
            return False
        task._entry = None
        self.size -= 1
        return True

    def drain(self) -> list[Task]:
        """Remove and return every delayed task."""
        tasks = [e[2] for e in self._heap if e[2]._entry is e]
        for task in tasks:
            task._entry = None
        self._heap.clear()
        self.size = 0
        return tasks
