"""Schedule state in process memory: the in-memory backend's ``ScheduleBackend`` part.

Owned by :class:`~worker_core.testing.InMemoryDurableBackend`; every method is synchronous, so within one event
loop each is atomic (the backend's async methods call them without awaiting in between). Everything that grows
is bounded: tick markers expire (a heap of expiries pruned on every tick), events are kept per schedule up to
the limit asked for, run requests are one flag per schedule, published records expire after ``PUBLISHED_TTL_S``.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from typing import final

from .types import PUBLISHED_TTL_S, ScheduleEvent, ScheduleRecord, ScheduleState, TickResult

__all__ = ("MemoryScheduleState",)

_EVENTS_CAP = 1000  # most events kept per schedule, whatever limit callers ask for


@final
class MemoryScheduleState:
    """Markers, last ticks, pause flags, run requests and events of every schedule, in memory."""

    __slots__ = ("_events", "_expiry", "_last", "_limit", "_markers", "_now", "_paused", "_records", "_runs")

    def __init__(self, now: Callable[[], float], event_limit: int = 100) -> None:
        self._now = now
        self._limit = event_limit
        self._markers: dict[tuple[str, int], float] = {}
        self._expiry: list[tuple[float, str, int]] = []
        self._last: dict[str, int] = {}
        self._paused: set[str] = set()
        self._runs: set[str] = set()
        self._records: dict[str, tuple[ScheduleRecord, float]] = {}  # name -> (record, published at)
        self._events: dict[str, deque[ScheduleEvent]] = {}

    def tick(
        self, schedule: str, tick_ms: int, ttl: float, store: Callable[[], bool], event: ScheduleEvent
    ) -> TickResult:
        """Check the pause flag and the marker, then ``store()`` (False: the task id existed), all at once."""
        now = self._now()
        self._prune(now)
        if schedule in self._paused:
            return TickResult.PAUSED
        key = (schedule, tick_ms)
        if key in self._markers or not store():
            return TickResult.DUPLICATE
        expires = now + max(ttl, 0.001)
        self._markers[key] = expires
        heapq.heappush(self._expiry, (expires, schedule, tick_ms))
        if tick_ms > self._last.get(schedule, -1):
            self._last[schedule] = tick_ms
        self.record(event, self._limit)
        return TickResult.ENQUEUED

    def _prune(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, schedule, tick_ms = heapq.heappop(expiry)
            self._markers.pop((schedule, tick_ms), None)

    def markers(self) -> int:
        """Tick markers currently held (expired ones are dropped on the next tick)."""
        return len(self._markers)

    def publish(self, records: Sequence[ScheduleRecord]) -> None:
        """Keep ``records`` by name (a later one replaces an earlier one); drop those not published for the TTL."""
        now = self._now()
        for record in records:
            self._records[record.name] = (record, now)
        cutoff = now - PUBLISHED_TTL_S
        for name in [name for name, (_, at) in self._records.items() if at < cutoff]:
            del self._records[name]

    def listed(self) -> list[ScheduleRecord]:
        """Every record published within the TTL, by name."""
        cutoff = self._now() - PUBLISHED_TTL_S
        out = []
        for name in sorted(self._records):
            record, at = self._records[name]
            if at >= cutoff:
                out.append(record)
        return out

    def states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flag, last tick and last event of each of ``names``."""
        out: dict[str, ScheduleState] = {}
        for name in names:
            events = self._events.get(name)
            out[name] = ScheduleState(name in self._paused, self._last.get(name), events[0] if events else None)
        return out

    def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume ``name``."""
        if paused:
            self._paused.add(name)
        else:
            self._paused.discard(name)

    def request_run(self, name: str) -> None:
        """Ask for one run of ``name``."""
        self._runs.add(name)

    def take_runs(self, names: Sequence[str]) -> list[str]:
        """Remove and return the requests pending for ``names``."""
        if not self._runs:
            return []
        taken = [name for name in names if name in self._runs]
        self._runs.difference_update(taken)
        return taken

    def record(self, event: ScheduleEvent, limit: int) -> None:
        """Push ``event``; a schedule keeps its newest ``limit`` events (at most 1,000)."""
        events = self._events.get(event.schedule)
        if events is None:
            events = self._events[event.schedule] = deque(maxlen=_EVENTS_CAP)
        events.appendleft(event)
        while len(events) > max(1, limit):
            events.pop()

    def events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name``."""
        return list(self._events.get(name, ()))[: max(0, limit)]
