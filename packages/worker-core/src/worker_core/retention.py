"""How long finished tasks stay visible to ``get_task`` (go-worker's RetentionPolicy), and its bookkeeping.

A manager keeps at most :data:`DEFAULT_RETENTION`'s 10,000 finished tasks unless told otherwise, so memory
follows the work in flight, not the work ever done. ``set_retention_policy(None)`` keeps everything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, final

from . import task as records
from .errors import ConfigurationError
from .options import is_plain_int, to_seconds
from .task import Task

__all__ = ("DEFAULT_RETENTION", "Retention", "RetentionPolicy")


@final
@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Evict finished tasks from the registry by age and by count; active tasks are never evicted.

    Attributes:
        ttl: Seconds (or a ``timedelta``) a finished task is kept; ``None`` keeps it forever.
        max_entries: Most tasks kept; the oldest finished ones go first (in batches: once past the bound,
            down to ``max_entries // 16`` below it). ``None``: no limit.
        cleanup_interval: How often the TTL sweep runs; ``None`` means ``clamp(ttl / 2, 1 s, 60 s)``.
    """

    ttl: float | timedelta | None = None
    max_entries: int | None = None
    cleanup_interval: float | timedelta | None = None

    def normalized(self) -> tuple[float | None, int | None, float]:
        """``(ttl_s, max_entries, interval_s)``, validated.

        Raises:
            ConfigurationError: a negative or mistyped value.
        """
        try:
            ttl = to_seconds(self.ttl, "ttl")
            interval = to_seconds(self.cleanup_interval, "cleanup_interval")
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        max_entries: object = self.max_entries
        if max_entries is not None and (not is_plain_int(max_entries) or max_entries < 1):
            raise ConfigurationError(f"max_entries must be an int >= 1 or None, got {max_entries!r}")
        if interval is None:
            interval = min(max(ttl / 2, 1.0), 60.0) if ttl is not None else 60.0
        return ttl, self.max_entries, interval


#: What a new manager keeps: the 10,000 most recently finished tasks.
DEFAULT_RETENTION = RetentionPolicy(max_entries=10_000)


@final
class Retention:
    """Finished tasks in finish order, evicted (through ``evict``) by the policy's TTL and count.

    ``size()`` is the registry's size (active tasks count against ``max_entries`` but are never evicted);
    ``evict(task)`` removes a task and returns the registry's size after.
    The TTL sweep is a timer on the loop, armed while a TTL is set and the manager runs.
    """

    __slots__ = ("_checked", "_evict", "_finished", "_interval", "_loop", "_max", "_size", "_timer", "_ttl")

    def __init__(self, evict: Callable[[Task[Any]], int], size: Callable[[], int]) -> None:
        self._evict = evict
        self._size = size
        self._finished: deque[Task[Any]] = deque()
        self._ttl: float | None = None
        self._max: int | None = None
        self._interval = 60.0
        self._checked = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        """Whether finished tasks are evicted at all."""
        return self._ttl is not None or self._max is not None

    def set(self, policy: RetentionPolicy | None, finished: Iterable[Task[Any]]) -> None:
        """Use ``policy`` from now on (``None``: keep everything); ``finished`` are the tasks finished so far.

        Raises:
            ConfigurationError: ``policy`` is not a :class:`RetentionPolicy`, or a value is out of range.
        """
        if policy is not None and not isinstance(policy, RetentionPolicy):
            raise ConfigurationError(f"policy must be a RetentionPolicy, got {policy!r}")
        ttl, max_entries, interval = policy.normalized() if policy is not None else (None, None, 60.0)
        was_active = self.active
        self._ttl, self._max, self._interval = ttl, max_entries, interval
        self._checked = 0.0
        if not self.active:
            self._finished.clear()
        elif not was_active:  # finished tasks are queued for eviction only while a policy is set: catch up
            self._finished = deque(sorted(finished, key=records.completed_mono))
        self._arm()
        self.prune(time.monotonic())

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the TTL sweep on ``loop`` (the manager started)."""
        self._loop = loop
        self._arm()

    def close(self) -> None:
        """Stop the TTL sweep (the manager stops)."""
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def note(self, task: Task[Any], size: int) -> None:
        """``task`` just finished (its hooks are done; the registry holds ``size``): queue it, apply the bounds."""
        limit = self._max
        ttl = self._ttl
        if limit is None and ttl is None:
            return
        finished = self._finished
        finished.append(task)
        if limit is not None and size > limit:
            # In batches: past the bound, down to 1/16 below it (one pass per batch, not one per task).
            evict = self._evict
            low = limit - (limit >> 4)
            while finished and size > low:
                size = evict(finished.popleft())
        if ttl is not None:
            self.prune(records.completed_mono(task))

    def prune(self, now: float, *, sweep: bool = False) -> None:
        """Evict by TTL (at most once per interval unless ``sweep``) and by count (every call)."""
        finished = self._finished
        ttl = self._ttl
        if ttl is not None and (sweep or now - self._checked >= self._interval):
            self._checked = now
            while finished and now - records.completed_mono(finished[0]) >= ttl:
                self._evict(finished.popleft())
        limit = self._max
        if limit is not None:
            size = self._size()
            while finished and size > limit:
                size = self._evict(finished.popleft())

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None and self._ttl is not None:
            self._timer = self._loop.call_later(self._interval, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        self.prune(time.monotonic(), sweep=True)
        self._arm()
