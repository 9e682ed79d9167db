"""The ready queues (priority bands shared out by weighted round robin) and the delayed heap.

Entries are removed lazily: a task that leaves a queue early (cancelled, run by ``execute_task``) gets
``task._entry = None`` and its entry is skipped when it reaches the front. Counters are kept exact at
once, so ``max_tasks`` and ``queue_depth`` never see stale entries.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import Task

__all__ = ("PRIORITY_MAX", "PRIORITY_MIN", "DelayedHeap", "ReadyScheduler")

_PRIORITY_OFFSET = 1 << 63
_WEIGHT_LIMIT = (1 << 63) - 1
PRIORITY_MIN = -(1 << 63)
PRIORITY_MAX = (1 << 63) - 1


class _Band:
    """The ready tasks of one queue with one (priority, weight), in id order; the band is their token.

    Task ids made by this process increase (UUIDv7), so new tasks arrive in id order and are appended
    to a FIFO; a task that arrives out of order (an explicit id, a retry coming back) goes to a small
    heap of (id, task). Popping takes the smaller id of the two fronts. A task is live here while
    ``task._entry is band``; plain task references (no entry tuple per task) keep queued tasks to one
    object each for the garbage collector. A task that left and came back may sit here twice: both
    copies sort alike (same id), the first one popped takes it and the other is then stale.
    """

    __slots__ = ("fifo", "heap", "last")

    def __init__(self) -> None:
        self.fifo: deque[Task] = deque()
        self.heap: list[tuple[int, Task]] = []
        self.last = -1  # id of the newest FIFO entry

    def pop(self) -> Task | None:
        """The live task with the smallest id, or ``None`` when only stale entries were left."""
        fifo = self.fifo
        heap = self.heap
        while fifo or heap:
            from_heap = heap and (not fifo or heap[0][0] < fifo[0]._key)
            task = heapq.heappop(heap)[1] if from_heap else fifo.popleft()
            if task._entry is self:
                task._entry = None
                return task
        return None

    def tasks(self) -> list[Task]:
        """Every live task, each once."""
        live = []
        for task in (*self.fifo, *(entry[1] for entry in self.heap)):
            if task._entry is self:
                task._entry = None
                live.append(task)
        return live

    def __bool__(self) -> bool:
        return bool(self.fifo or self.heap)


class _Queue:
    """One named queue: its bands by (priority, weight) order, and the WRR state."""

    __slots__ = ("bands", "front", "keys", "last_band", "last_priority", "last_weight", "live", "quantum", "weight")

    def __init__(self, weight: int) -> None:
        self.bands: dict[int, _Band] = {}
        self.keys: list[int] = []  # band keys, ascending: the front band holds the next task
        self.front: _Band | None = None  # bands[keys[0]]
        self.live = 0
        self.quantum = 0
        self.weight = weight
        self.last_band: _Band | None = None  # the band of the last push (most tasks share one) ...
        self.last_priority = self.last_weight = 0  # ... and its priority and weight

    def band(self, priority: int, weight: int) -> _Band:
        key = ((priority + _PRIORITY_OFFSET) << 64) | (_WEIGHT_LIMIT - min(weight, _WEIGHT_LIMIT))
        band = self.bands.get(key)
        if band is None:
            band = self.bands[key] = _Band()
            bisect.insort(self.keys, key)
            self.front = self.bands[self.keys[0]]
        self.last_priority = priority
        self.last_weight = weight
        self.last_band = band
        return band

    def pop(self) -> Task | None:
        """The next live task of this queue (the caller keeps ``live`` and the WRR state)."""
        while (band := self.front) is not None:
            task = band.pop()
            if task is not None:
                if not band:
                    self.drop_front()
                return task
            self.drop_front()
        return None

    def drop_front(self) -> None:
        """The front band has no entries left: forget it."""
        keys = self.keys
        band = self.bands.pop(keys.pop(0))
        self.front = self.bands[keys[0]] if keys else None
        if band is self.last_band:
            self.last_band = None

    def clear(self) -> None:
        self.bands.clear()
        self.keys.clear()
        self.front = None
        self.live = 0
        self.quantum = 0
        self.last_band = None


class ReadyScheduler:
    """Per-queue priority bands served by plain weighted round robin (go-worker's queue_scheduler).

    Inside a queue: lower priority first, then higher weight, then the id's canonical string ascending.
    Queue names are kept sorted; a cursor persists across pops. A queue with quantum 0 is refilled to
    its weight and serves up to ``weight`` tasks in a row before the cursor moves on.
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
        band = queue.last_band
        if band is None or queue.last_priority != task.priority or queue.last_weight != task.weight:
            band = queue.band(task.priority, task.weight)
        task._entry = band
        key = task._key
        if key > band.last:
            band.fifo.append(task)
            band.last = key
        else:
            heapq.heappush(band.heap, (key, task))
        queue.live += 1
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
            if not queue.live:
                if queue.quantum or queue.keys:
                    queue.clear()
                self._cursor = (self._cursor + 1) % count
                continue
            if not queue.quantum:
                queue.quantum = queue.weight
            # The usual case inline: the front band's FIFO holds the next task and no heap competes.
            band = queue.front
            fifo = band.fifo  # type: ignore[union-attr]  # live > 0: there is a front band
            task = fifo.popleft() if fifo and not band.heap else None  # type: ignore[union-attr]
            if task is not None and task._entry is band:
                task._entry = None
                if not fifo:
                    queue.drop_front()
            else:
                task = queue.pop()
                if task is None:  # pragma: no cover - live > 0 guarantees a live entry
                    continue
            queue.live -= 1
            self.size -= 1
            queue.quantum -= 1
            if not queue.quantum:
                self._cursor = (self._cursor + 1) % count
            return task
        return None  # pragma: no cover - size > 0 guarantees a live entry

    def remove(self, task: Task) -> bool:
        """Take ``task`` out of its queue if it is there; True when it was."""
        if type(task._entry) is not _Band:
            return False
        queue = self._queues[task.queue]
        task._entry = None
        queue.live -= 1
        self.size -= 1
        if not queue.live:
            queue.clear()
        return True

    def depths(self) -> dict[str, int]:
        """Ready tasks per queue."""
        return {name: q.live for name, q in self._queues.items()}

    def drain(self) -> list[Task]:
        """Remove and return every ready task, in no particular order."""
        tasks = []
        for queue in self._queues.values():
            for band in queue.bands.values():
                tasks.extend(band.tasks())
            queue.clear()
        self.size = 0
        return tasks


# Delayed entry: (due time on the loop clock, id as int, task).
_Delayed = tuple[float, int, "Task"]


class DelayedHeap:
    """Tasks whose ``run_at`` is in the future, earliest first, then by id."""

    __slots__ = ("_heap", "size")

    def __init__(self) -> None:
        self._heap: list[Any] = []  # of _Delayed (Any: see push)
        self.size = 0

    def push(self, task: Task, due: float) -> None:
        """Hold ``task`` until the loop clock reaches ``due``."""
        # Typed Any: the entry's identity marks it live, so it must stay one (boxed) tuple when compiled.
        entry: Any = (due, task._key, task)
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
        if type(entry) is not tuple or len(entry) != 3:
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
