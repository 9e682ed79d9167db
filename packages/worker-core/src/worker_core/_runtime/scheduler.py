"""Where tasks wait to start: ready queues (priority bands, weighted round robin) and the delayed heap.

Everything here is bounded by what waits now: a queue that empties leaves the round robin (and, past a
small cache, memory), a band that empties is dropped, and a task taken out early (cancelled, run by
``execute_task``) is forgotten at once: its entry becomes a stale marker that is skipped and compacted away.

Ordering (go-worker's, spec §2.2-2.4): inside a queue lower priority first, then higher weight, then the id's
canonical string ascending (the id's int order). Across queues plain weighted round robin with a quantum: the
non-empty queues in name order, a cursor that persists, each queue serving up to ``weight`` tasks in a row.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from worker_core import task as records
from worker_core.task import Task

from .delayed import DelayedTasks

__all__ = ("PRIORITY_MAX", "PRIORITY_MIN", "ReadyQueues", "Scheduler")

_key = records.key
_PRIORITY_OFFSET = 1 << 63
_WEIGHT_LIMIT = (1 << 63) - 1
PRIORITY_MIN = -(1 << 63)
PRIORITY_MAX = (1 << 63) - 1
_IDLE_QUEUES = 64  # empty queue objects kept for reuse (a queue that empties and refills at once is common)
_STALE_SLACK = 64  # stale entries a queue may hold beyond its live count before it is compacted


class _Band:
    """The ready tasks of one queue with one (priority, weight), in id order.

    Task ids made by this process increase (UUIDv7), so new tasks arrive in id order and are appended to
    a FIFO; a task that arrives out of order (an explicit id, a retry coming back) goes to a small heap of
    (id, task). Popping takes the smaller id of the two fronts.
    """

    __slots__ = ("fifo", "heap", "last", "lookup", "queue")

    def __init__(self, queue: _Queue, lookup: object) -> None:
        self.queue = queue
        self.lookup = lookup  # its key in the queue's lookup dict
        self.fifo: deque[Task[Any]] = deque()
        self.heap: list[tuple[int, Task[Any]]] = []
        self.last = -1  # id of the newest FIFO entry

    def add(self, task: Task[Any], key: int) -> None:
        if key > self.last:
            self.fifo.append(task)
            self.last = key
        else:
            heapq.heappush(self.heap, (key, task))

    def pop_any(self) -> Task[Any] | None:
        """The entry with the smallest id (live or stale), or ``None`` when empty."""
        fifo = self.fifo
        heap = self.heap
        if heap and (not fifo or heap[0][0] < _key(fifo[0])):
            return heapq.heappop(heap)[1]
        return fifo.popleft() if fifo else None

    def entries(self) -> list[Task[Any]]:
        return [*self.fifo, *(entry[1] for entry in self.heap)]


class _Queue:
    """One named queue: its bands in (priority, weight) order and its round-robin quantum."""

    __slots__ = (
        "bands",
        "front",
        "keys",
        "last_band",
        "last_priority",
        "last_weight",
        "live",
        "lookup",
        "name",
        "quantum",
        "stale",
        "weight",
    )

    def __init__(self, name: str, weight: int) -> None:
        self.name = name
        self.weight = weight
        self.bands: dict[int, _Band] = {}  # by order key: (priority, then weight descending) as one int
        self.keys: list[int] = []  # band keys, ascending: the front band holds the next task
        self.lookup: dict[object, _Band] = {}  # by priority (weight 1) or (priority, weight): cheap to hash
        self.front: _Band | None = None  # bands[keys[0]]
        self.live = 0  # tasks waiting here
        self.stale = 0  # entries of tasks taken out early, still in a band
        self.quantum = 0
        self.last_band: _Band | None = None  # the band of the last push (most tasks share one) ...
        self.last_priority = self.last_weight = 0  # ... and its priority and weight

    def band(self, priority: int, weight: int) -> _Band:
        band = self.last_band
        if band is not None and self.last_priority == priority and self.last_weight == weight:
            return band
        lookup: object = priority if weight == 1 else (priority, weight)
        band = self.lookup.get(lookup)
        if band is None:
            band = self.lookup[lookup] = _Band(self, lookup)
            band_key = ((priority + _PRIORITY_OFFSET) << 64) | (_WEIGHT_LIMIT - min(weight, _WEIGHT_LIMIT))
            self.bands[band_key] = band
            bisect.insort(self.keys, band_key)
            self.front = self.bands[self.keys[0]]
        self.last_priority = priority
        self.last_weight = weight
        self.last_band = band
        return band

    def drop_front(self) -> None:
        """The front band has no entries left: forget it."""
        keys = self.keys
        band = self.bands.pop(keys.pop(0))
        del self.lookup[band.lookup]
        self.front = self.bands[keys[0]] if keys else None
        if band is self.last_band:
            self.last_band = None

    def clear(self) -> None:
        self.bands.clear()
        self.lookup.clear()
        self.keys.clear()
        self.front = self.last_band = None
        self.live = self.stale = self.quantum = 0


class ReadyQueues:
    """Ready tasks: per-queue priority bands, shared out by weighted round robin over non-empty queues.

    Task keys are unique among the tasks waiting here (the registry guarantees it).
    """

    __slots__ = ("_cursor", "_idle", "_queues", "_ring", "_weights", "_where", "size")

    def __init__(self, weights: Mapping[str, int]) -> None:
        self._weights = dict(weights)
        self._queues: dict[str, _Queue] = {}  # non-empty queues by name
        self._ring: list[str] = []  # their names, sorted: the round robin's order
        self._cursor = 0  # index in _ring of the queue being served
        self._idle: dict[str, _Queue] = {}  # a few empty queues kept for reuse, oldest first
        self._where: dict[Task[Any], _Band] = {}  # the band of every waiting task (tasks hash by identity)
        self.size = 0

    def push(self, task: Task[Any], key: int | None = None) -> None:
        """Make ``task`` ready in its queue (its queue, priority and weight are already normalised).

        ``key`` is the task's key when the caller has it at hand.
        """
        name = task.queue
        queue = self._queues.get(name)
        if queue is None:
            queue = self._activate(name)
        priority = task.priority
        weight = task.weight
        band = queue.last_band  # most tasks share the band of the one before
        if band is None or queue.last_priority != priority or queue.last_weight != weight:
            band = queue.band(priority, weight)
        if key is None:
            key = _key(task)
        if key > band.last:
            band.fifo.append(task)
            band.last = key
        else:
            heapq.heappush(band.heap, (key, task))
        self._where[task] = band
        queue.live += 1
        self.size += 1

    def _activate(self, name: str) -> _Queue:
        queue = self._idle.pop(name, None)
        if queue is None:
            weight = self._weights.get(name, 1)
            queue = _Queue(name, weight if weight > 0 else 1)
        self._queues[name] = queue
        ring = self._ring
        index = bisect.bisect_left(ring, name)
        ring.insert(index, name)
        cursor = self._cursor
        if index <= cursor < len(ring) - 1 and self._queues[ring[cursor + 1]].quantum:
            self._cursor = cursor + 1  # a queue in the middle of its turn keeps it
        return queue

    def _deactivate(self, queue: _Queue) -> None:
        """``queue`` has nothing left: out of the round robin, its bands dropped."""
        ring = self._ring
        index = bisect.bisect_left(ring, queue.name)
        del ring[index]
        if index < self._cursor:
            self._cursor -= 1
        if self._cursor >= len(ring):
            self._cursor = 0
        del self._queues[queue.name]
        queue.clear()
        idle = self._idle
        idle[queue.name] = queue
        if len(idle) > _IDLE_QUEUES:
            del idle[next(iter(idle))]

    def pop(self) -> Task[Any] | None:
        """Take the next task by weighted round robin, or ``None`` when nothing is ready."""
        if not self.size:
            return None
        queue = self._queues[self._ring[self._cursor]]
        if not queue.quantum:
            queue.quantum = queue.weight
        where = self._where
        while True:
            band = queue.front
            assert band is not None  # live > 0: there is a band with a live entry
            fifo = band.fifo
            task = fifo.popleft() if fifo and not band.heap else band.pop_any()  # the FIFO alone: the usual case
            if task is None:
                queue.drop_front()
                continue
            held = where.pop(task, None)
            if held is band:
                break
            if held is not None:  # a stale entry of a task that waits in another band now
                where[task] = held
            queue.stale -= 1
        if not band.fifo and not band.heap:
            queue.drop_front()
        self.size -= 1
        queue.live -= 1
        queue.quantum -= 1
        if not queue.live:
            self._deactivate(queue)
        elif not queue.quantum:
            self._cursor = (self._cursor + 1) % len(self._ring)
        return task

    def remove(self, task: Task[Any]) -> bool:
        """Take ``task`` out if it waits here; True when it did."""
        band = self._where.pop(task, None)
        if band is None:
            return False
        queue = band.queue
        queue.live -= 1
        queue.stale += 1
        self.size -= 1
        if not queue.live:
            self._deactivate(queue)
        elif queue.stale > queue.live + _STALE_SLACK:
            self._compact(queue)
        return True

    def _compact(self, queue: _Queue) -> None:
        """Rebuild ``queue``'s bands from its live entries (stale ones hold tasks that left)."""
        where = self._where
        live = [task for band in queue.bands.values() for task in band.entries() if where.get(task) is band]
        live_count, quantum = queue.live, queue.quantum
        queue.clear()
        for task in live:
            band = queue.band(task.priority, task.weight)
            band.add(task, _key(task))
            where[task] = band
        queue.live, queue.quantum = live_count, quantum

    def drain(self) -> list[Task[Any]]:
        """Remove and return every ready task, in no particular order."""
        where = self._where
        tasks = [
            task
            for queue in self._queues.values()
            for band in queue.bands.values()
            for task in band.entries()
            if where.get(task) is band
        ]
        for queue in list(self._queues.values()):
            self._deactivate(queue)
        where.clear()
        self.size = 0
        return tasks

    def depths(self) -> dict[str, int]:
        """Ready tasks per non-empty queue."""
        return {name: queue.live for name, queue in self._queues.items()}


class Scheduler:
    """The ready queues, the delayed heap and the one timer that moves due tasks from one to the other.

    ``on_ready`` is called (on the loop) whenever tasks became ready, so the worker pool can start them.
    """

    __slots__ = ("_loop", "_on_ready", "_timer", "delayed", "ready")

    def __init__(self, weights: Mapping[str, int], on_ready: Callable[[], None]) -> None:
        self.ready = ReadyQueues(weights)
        self.delayed = DelayedTasks()
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Tasks waiting to start: ready and delayed (what ``max_tasks`` bounds)."""
        return self.ready.size + self.delayed.size

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the delayed timer on ``loop`` (tasks registered before the start wait for this)."""
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        """Disarm the timer: nothing becomes ready any more."""
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def add_ready(self, task: Task[Any]) -> None:
        self.ready.push(task)

    def add_delayed(self, task: Task[Any], due: float) -> None:
        """Hold ``task`` until the loop clock reaches ``due``."""
        self.delayed.push(task, due)
        timer = self._timer
        if timer is None or due < timer.when():
            self._arm()

    def remove(self, task: Task[Any]) -> bool:
        """Take a waiting task out (ready or delayed); True when it was waiting."""
        if self.ready.remove(task):
            return True
        if self.delayed.remove(task):
            if not self.delayed.size:
                self._arm()
            return True
        return False

    def drain(self) -> list[Task[Any]]:
        """Remove and return every waiting task."""
        return self.ready.drain() + self.delayed.drain()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop
        if loop is None:
            return
        due = self.delayed.next_due()
        if due is not None:
            self._timer = loop.call_at(due, self._on_due)

    def _on_due(self) -> None:
        self._timer = None
        loop = self._loop
        if loop is None:
            return
        due = self.delayed.pop_due(loop.time())
        for task in due:
            self.ready.push(task)
        self._arm()
        if due:
            self._on_ready()
