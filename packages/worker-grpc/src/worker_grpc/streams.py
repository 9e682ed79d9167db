"""The fan-out of results to ``StreamResults`` calls: one core subscription per servicer, an index by task id.

The manager publishes each finished task once, to one subscription of this module's :class:`ResultFanout`
(whatever the number of streams). Its pump hands the task to the streams that listed its id (a dict
lookup) and to the streams without ids whose principal may see it (a set per owner, plus one set of the
streams granted every owner). A stream that is not interested in a task costs nothing when it finishes.

Bounds:

- at most :attr:`StreamLimits.max_streams` streams per servicer and
  :attr:`StreamLimits.max_streams_per_principal` per principal (``RESOURCE_EXHAUSTED`` beyond them), and
  at most :attr:`StreamLimits.max_ids` ids per stream;
- a stream with ids buffers at most one result per listed id (each is delivered once), so it never loses
  one; a stream without ids buffers at most :attr:`StreamLimits.buffer` results, and a full buffer loses
  results under :attr:`StreamLimits.drop_policy`, counted in :attr:`StreamMetrics.results_dropped`;
- the core subscription holds at most :attr:`StreamLimits.dispatch_buffer` results the pump has not
  taken yet (the pump takes everything buffered each time it runs); beyond it the manager's drop policy
  applies and the manager counts the loss (``manager.metrics().results_dropped``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from worker_core import DropPolicy, ResultSubscription, Task

from .access import EVERY_OWNER, Access, owner_of
from .auth import Principal

if TYPE_CHECKING:
    from worker_core import TaskManager

__all__ = ("ResultFanout", "ResultStream", "StreamLimits", "StreamMetrics", "TooManyStreamsError")

logger = logging.getLogger(__name__)


@final
@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds of the ``StreamResults`` calls of one servicer (see the module docstring)."""

    max_streams: int = 10_000
    max_streams_per_principal: int = 1_000
    max_ids: int = 10_000
    buffer: int = 256
    drop_policy: DropPolicy = DropPolicy.DROP_NEWEST
    dispatch_buffer: int = 65_536

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_streams_per_principal", "max_ids", "buffer", "dispatch_buffer"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.drop_policy, DropPolicy):
            raise ValueError(f"drop_policy must be a DropPolicy, got {self.drop_policy!r}")


@final
@dataclass(frozen=True, slots=True)
class StreamMetrics:
    """What the streams of one servicer did.

    Attributes:
        active: Streams open now.
        refused: Streams refused by a limit (``RESOURCE_EXHAUSTED``).
        results_offered: Results handed to a stream's buffer: one per finished task and stream that may see
            it and asked for it (a stream that did not ask costs nothing).
        results_dropped: Of those, results lost to a full buffer (this one or, with ``DROP_OLDEST``, an older one).
    """

    active: int
    refused: int
    results_offered: int
    results_dropped: int


class TooManyStreamsError(Exception):
    """A stream limit is reached; ``details`` says which (answered ``RESOURCE_EXHAUSTED``)."""


@final
class ResultStream:
    """The results one ``StreamResults`` call is due, buffered until its handler sends them."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_drop_oldest",
        "_items",
        "_registered",
        "_waiter",
        "everyone",
        "principal",
        "wanted",
    )

    def __init__(
        self, principal: Principal, wanted: Collection[uuid.UUID], *, everyone: bool, buffer: int, drop_oldest: bool
    ) -> None:
        self.principal = principal
        self.wanted = wanted
        self.everyone = everyone
        self._buffer = max(buffer, len(wanted))  # one per listed id: a filtered stream never loses a result
        self._drop_oldest = drop_oldest
        self._items: deque[Task[Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._registered = False  # in the fan-out's index (set and cleared by ResultFanout only)

    def _offer(self, task: Task[Any]) -> bool:
        """Buffer ``task``; False when a result (this one, or the oldest) was dropped."""
        items = self._items
        kept = True
        if len(items) >= self._buffer:
            if not self._drop_oldest:
                return False
            items.popleft()
            kept = False
        items.append(task)
        self._wake()
        return kept

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self) -> None:
        self._closed = True
        self._wake()

    def __len__(self) -> int:
        return len(self._items)

    async def next(self) -> Task[Any] | None:
        """The next finished task for this stream; ``None`` once the manager stopped and the buffer is empty."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None


@final
class ResultFanout:
    """Owns the servicer's one result subscription, its pump task and the index of open streams."""

    __slots__ = (
        "_access",
        "_by_id",
        "_by_owner",
        "_dropped",
        "_everyone",
        "_limits",
        "_manager",
        "_method",
        "_offered",
        "_per_principal",
        "_pumps",
        "_refused",
        "_streams",
        "_subscription",
    )

    def __init__(self, manager: TaskManager, access: Access, limits: StreamLimits, method: str) -> None:
        self._manager = manager
        self._access = access
        self._limits = limits
        self._method = method
        self._by_id: dict[uuid.UUID, set[ResultStream]] = {}
        self._by_owner: dict[str, set[ResultStream]] = {}  # streams without ids, by their principal's name
        self._everyone: set[ResultStream] = set()  # streams without ids granted every owner's results
        self._per_principal: Counter[str] = Counter()
        self._streams = 0
        self._refused = 0
        self._offered = 0
        self._dropped = 0
        self._subscription: ResultSubscription | None = None
        # The pump of the current subscription, and of a closed one still finishing its last loop.
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        """Streams open now."""
        return self._streams

    def metrics(self) -> StreamMetrics:
        """A snapshot of the counters."""
        return StreamMetrics(self._streams, self._refused, self._offered, self._dropped)

    def open(self, principal: Principal, wanted: Collection[uuid.UUID]) -> ResultStream:
        """Register a stream (before the caller looks at already finished tasks, so none is missed).

        Raises:
            TooManyStreamsError: a limit is reached; nothing was registered.
        """
        limits = self._limits
        if len(wanted) > limits.max_ids:
            self._refused += 1
            raise TooManyStreamsError(f"stream results: {len(wanted)} ids, at most {limits.max_ids} per stream")
        if self._streams >= limits.max_streams:
            self._refused += 1
            raise TooManyStreamsError(f"stream results: {limits.max_streams} streams open on this server")
        if self._per_principal[principal.name] >= limits.max_streams_per_principal:
            self._refused += 1
            raise TooManyStreamsError(
                f"stream results: {limits.max_streams_per_principal} streams open for this caller"
            )
        everyone = not wanted and self._access.allows(principal, self._method, EVERY_OWNER)
        stream = ResultStream(
            principal,
            wanted,
            everyone=everyone,
            buffer=limits.buffer,
            drop_oldest=limits.drop_policy is DropPolicy.DROP_OLDEST,
        )
        self._ensure_pump()
        if wanted:
            by_id = self._by_id
            for task_id in wanted:
                found = by_id.get(task_id)
                if found is None:
                    by_id[task_id] = {stream}
                else:
                    found.add(stream)
        elif everyone:
            self._everyone.add(stream)
        else:
            self._by_owner.setdefault(principal.name, set()).add(stream)
        stream._registered = True
        self._streams += 1
        self._per_principal[principal.name] += 1
        return stream

    def close(self, stream: ResultStream) -> None:
        """Unregister ``stream`` (idempotent); the last one closes the core subscription."""
        if not stream._registered:
            return
        stream._registered = False
        stream._finish()
        stream._items.clear()
        self._unindex(stream)
        self._streams -= 1
        name = stream.principal.name
        self._per_principal[name] -= 1
        if self._per_principal[name] <= 0:
            del self._per_principal[name]
        if self._streams == 0:
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                subscription.close()  # the pump's loop ends by itself

    def _unindex(self, stream: ResultStream) -> None:
        if stream.wanted:
            by_id = self._by_id
            for task_id in stream.wanted:
                found = by_id.get(task_id)
                if found is not None:
                    found.discard(stream)
                    if not found:
                        del by_id[task_id]
        elif stream.everyone:
            self._everyone.discard(stream)
        else:
            owned = self._by_owner.get(stream.principal.name)
            if owned is not None:
                owned.discard(stream)
                if not owned:
                    del self._by_owner[stream.principal.name]

    def _ensure_pump(self) -> None:
        subscription = self._subscription
        if subscription is not None and not subscription.closed:
            return
        subscription = self._subscription = self._manager.subscribe_results(self._limits.dispatch_buffer)
        pump = asyncio.get_running_loop().create_task(self._run(subscription), name="worker-grpc result fan-out")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _run(self, subscription: ResultSubscription) -> None:
        """Take every result of ``subscription`` and hand it to the interested streams, until it closes."""
        dispatch = self._dispatch
        async for result in subscription:
            self._guarded(dispatch, result.task)
            while (more := subscription.get_nowait()) is not None:
                self._guarded(dispatch, more.task)
        if self._subscription is subscription:  # the manager stopped: every open stream ends, once drained
            self._subscription = None
            for stream in self._open_streams():
                stream._finish()

    @staticmethod
    def _guarded(dispatch: Callable[[Task[Any]], None], task: Task[Any]) -> None:
        # A bug here must not end the pump: every stream of the server would wait forever.
        try:
            dispatch(task)
        except Exception:
            logger.exception("result fan-out failed for task %s", task.id)

    def _open_streams(self) -> list[ResultStream]:
        found = set(self._everyone)
        for streams in self._by_id.values():
            found |= streams
        for streams in self._by_owner.values():
            found |= streams
        return list(found)

    def _dispatch(self, task: Task[Any]) -> None:
        offered = dropped = 0
        owner: str | None = None
        filtered = self._by_id.get(task.id)
        if filtered:
            owner = owner_of(task)
            allows = self._access.allows
            method = self._method
            for stream in tuple(filtered):
                if allows(stream.principal, method, owner):
                    filtered.discard(stream)  # each id is sent once: the stream needs no more of it
                    offered += 1
                    if not stream._offer(task):
                        dropped += 1
            if not filtered:
                del self._by_id[task.id]
        if self._by_owner:
            owned = self._by_owner.get(owner_of(task) if owner is None else owner)
            if owned:
                for stream in owned:
                    offered += 1
                    if not stream._offer(task):
                        dropped += 1
        everyone = self._everyone
        if everyone:
            offered += len(everyone)
            for stream in everyone:
                if not stream._offer(task):
                    dropped += 1
        self._offered += offered
        self._dropped += dropped
