"""The schedules of one manager: registration, one supervised loop over a heap of next ticks, shared state.

One asyncio task (supervised by the manager: restarted if it dies) serves every schedule: it sleeps until the
earliest next tick (at most :data:`POLL_S`), fires what is due, and for durable schedules polls the backend for
run requests (``trigger_schedule`` on any node). Each schedule fires its ticks in order in a task of its own
while one is in flight (owned here, cancelled at stop), so a slow factory or backend delays only its schedule.
A loop that wakes late fires each tick it missed (at most :data:`LATE_TICKS`; older ones are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Final

from worker_core.errors import ConfigurationError, ScheduleExistsError, ScheduleNotFoundError, ScheduleSpecError

from .entry import Entry, Factory, Firing, fire
from .spec import parse_spec
from .types import REPUBLISH_S, MissedPolicy, ScheduleBackend, ScheduleEvent, ScheduleInfo, ScheduleRecord

__all__ = ("LATE_TICKS", "POLL_S", "ScheduleRunner")

logger = logging.getLogger("worker_core.schedules")

POLL_S: Final = 1.0  # longest sleep of the loop, and the period of the run-request poll (durable)
LATE_TICKS: Final = 16  # ticks a late loop still fires per schedule
_EVENT_LIMIT: Final = 100  # events kept per schedule in the backend
_MIN_TTL_S: Final = 60.0


def _node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ScheduleRunner:
    """Every schedule of one manager, and the one loop that fires them."""

    def __init__(
        self,
        port: Firing,
        *,
        tz: tzinfo,
        clock: Callable[[], float] | None = None,
        backend: Callable[[], object] | None = None,
        notify: Callable[[str, str], None] | None = None,
    ) -> None:
        self._port = port
        self._tz = tz
        self._clock = clock or time.time
        self._backend = backend  # the durable backend (resolved on first use), or None in process
        self._notify = notify or (lambda name, outcome: None)
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[int, int, str]] = []  # (next tick ms, generation, name)
        self._generation = 0
        self._wake: asyncio.Event | None = None
        self._open = False
        self._dirty = True  # durable schedules not yet published to the backend
        self._republish_at = 0.0  # monotonic time of the next periodic publication (records expire unrepublished)
        self._firing: set[asyncio.Task[None]] = set()
        self.node = _node_id()

    # ------------------------------------------------------------------------------------ registration

    def now_ms(self) -> int:
        """The schedules' clock, in epoch ms."""
        return int(self._clock() * 1000)

    def register(
        self,
        name: str,
        spec: str | timedelta,
        factory: Factory,
        *,
        durable: bool,
        tz: str | tzinfo | None,
        missed: MissedPolicy,
        tick_ttl: float | timedelta | None,
    ) -> None:
        """Add a schedule (see ``TaskManager.register_cron_task``)."""
        given: object = name
        if not isinstance(given, str) or not given.strip():
            raise ConfigurationError("a schedule needs a non-empty name")
        if not callable(factory):
            raise ConfigurationError(f"schedule {name!r}: the factory must be callable, got {type(factory).__name__}")
        if missed not in ("skip", "once"):
            raise ConfigurationError(f"schedule {name!r}: missed must be 'skip' or 'once', got {missed!r}")
        if missed == "once" and not durable:
            raise ConfigurationError(f"schedule {name!r}: missed='once' needs a durable schedule (state in a backend)")
        if name in self._entries:
            raise ScheduleExistsError(f"cron task already registered: {name!r}")
        parsed = parse_spec(spec, self._tz if tz is None else tz)
        now = self.now_ms()
        try:
            period_s = parsed.period_ms(now) / 1000
        except ScheduleSpecError:
            period_s = _MIN_TTL_S
        if tick_ttl is None:
            ttl_s = max(_MIN_TTL_S, 3 * period_s)
        else:
            ttl_s = tick_ttl.total_seconds() if isinstance(tick_ttl, timedelta) else float(tick_ttl)
            if not ttl_s > 0:
                raise ConfigurationError(f"schedule {name!r}: tick_ttl must be > 0")
        entry = Entry(name, parsed, factory, durable, missed, ttl_s)
        self._entries[name] = entry
        self._schedule(entry, parsed.next_after(now))
        self._dirty = True
        self._poke()

    def unregister(self, name: str) -> bool:
        """Remove a schedule; False when there is none by this name. A tick firing now completes."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return False
        entry.generation = -1  # its heap entry is stale from now on
        entry.pending.clear()
        if len(self._heap) > 2 * len(self._entries) + 64:  # drop stale heap entries now and then: bounded
            self._heap = [item for item in self._heap if self._live(item)]
            heapq.heapify(self._heap)
        return True

    def names(self) -> list[str]:
        """The registered schedules' names."""
        return list(self._entries)

    def entry(self, name: str) -> Entry:
        """The schedule ``name``; raises ScheduleNotFoundError."""
        entry = self._entries.get(name)
        if entry is None:
            raise ScheduleNotFoundError(f"no schedule named {name!r}")
        return entry

    def _schedule(self, entry: Entry, next_ms: int) -> None:
        self._generation += 1
        entry.generation = self._generation
        entry.next_ms = next_ms
        heapq.heappush(self._heap, (next_ms, entry.generation, entry.name))

    def _live(self, item: tuple[int, int, str]) -> bool:
        entry = self._entries.get(item[2])
        return entry is not None and entry.generation == item[1]

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -------------------------------------------------------------------------------------------- loop

    def open(self) -> None:
        """The manager started: ticks count from now (those between registration and start are not fired)."""
        self._wake = asyncio.Event()
        now = self.now_ms()
        for entry in self._entries.values():
            self._schedule(entry, entry.spec.next_after(now))
        self._open = True

    def schedule_backend(self) -> ScheduleBackend | None:
        """The durable backend when it shares schedule state, else ``None``."""
        backend = self._backend() if self._backend is not None else None
        return backend if isinstance(backend, ScheduleBackend) else None

    async def run(self) -> None:
        """The loop (supervised by the manager; cancelled at stop)."""
        wake = self._wake
        assert wake is not None
        firing = self._firing
        try:
            await self._catch_up()
            next_poll = 0.0
            while True:
                now = self.now_ms()
                self._fire_due(now)
                if self._has_durable() and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL_S
                    await self._poll()
                wait = POLL_S if self._has_durable() else None
                if self._heap:
                    until = max(0.0, (self._heap[0][0] - self.now_ms()) / 1000)
                    wait = until if wait is None else min(wait, until)
                wake.clear()
                if wait is None or wait > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await wake.wait()
        finally:
            for task in list(firing):
                task.cancel()

    def _has_durable(self) -> bool:
        return self._backend is not None and bool(self._entries)

    def _fire_due(self, now: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            if not self._live(item):
                continue
            entry = self._entries[item[2]]
            tick = item[0]
            late = 0
            while tick <= now and late < LATE_TICKS:
                entry.push(tick, False)
                tick = entry.spec.next_after(tick)
                late += 1
            if tick <= now:
                logger.warning("schedule %r: the loop woke late; ticks before %s skipped", entry.name, now)
                entry.skipped += 1
                self._notify(entry.name, "late")
                tick = entry.spec.next_after(now)
            self._schedule(entry, tick)
            self._drain(entry)

    def _drain(self, entry: Entry) -> None:
        if entry.firing is not None and not entry.firing.done():
            return
        entry.firing = task = asyncio.get_running_loop().create_task(
            self._fire_pending(entry), name=f"worker-core-schedule-{entry.name}"
        )
        self._firing.add(task)
        task.add_done_callback(self._firing.discard)

    async def _fire_pending(self, entry: Entry) -> None:
        while entry.pending:
            tick, manual = entry.pending.popleft()
            queue = entry.queue
            event = await fire(entry, tick, manual, self._port, self.node, self.now_ms)
            if entry.queue != queue and entry.durable:
                self._dirty = True  # publish the queue the factory's tasks go to
            await self._booked(entry, event)

    async def _booked(self, entry: Entry, event: ScheduleEvent) -> None:
        """Count ``event``, tell the instrumentation, keep it (and store it in the backend unless the tick did)."""
        kind = event.kind
        if kind in ("fired", "enqueued", "triggered"):
            entry.fired += 1
            self._notify(entry.name, "fired")
        else:
            entry.skipped += 1
            reason = "failed" if kind == "failed" else "duplicate" if kind == "duplicate" else "skipped"
            if event.error == "paused":
                reason = "paused"
            elif kind == "skipped":
                reason = "not_accepting"
            self._notify(entry.name, reason)
        if kind == "duplicate":
            return  # another node fired it (and recorded it)
        entry.events.appendleft(event)
        backend = self.schedule_backend() if entry.durable else None
        if backend is not None and kind != "enqueued":  # the tick script recorded "enqueued" itself
            try:
                await backend.record_schedule_event(event, _EVENT_LIMIT)
            except Exception:
                logger.warning("schedule %r: recording an event failed", entry.name, exc_info=True)

    async def _catch_up(self) -> None:
        """``missed="once"``: fire the latest tick missed while no node ran the schedule, once."""
        backend = self.schedule_backend()
        wanted = [e for e in self._entries.values() if e.durable and e.missed == "once"]
        if backend is None or not wanted:
            return
        try:
            states = await backend.schedule_states([e.name for e in wanted])
        except Exception:
            logger.warning("schedules: reading the last ticks failed; nothing missed is caught up", exc_info=True)
            return
        now = self.now_ms()
        for entry in wanted:
            last = states[entry.name].last_tick_ms if entry.name in states else None
            latest = entry.spec.last_at_or_before(now)
            if last is not None and latest is not None and latest > last:
                logger.info("schedule %r: catching up the missed tick %s (last fired: %s)", entry.name, latest, last)
                entry.push(latest, False)
                self._drain(entry)

    async def _poll(self) -> None:
        backend = self.schedule_backend()
        if backend is None:
            return
        try:
            if self._dirty or time.monotonic() >= self._republish_at:
                self._dirty = False
                self._republish_at = time.monotonic() + REPUBLISH_S
                await backend.publish_schedules(self.records())
            for name in await backend.take_schedule_runs(self.names()):
                entry = self._entries.get(name)
                if entry is not None and entry.push(None, True):
                    self._drain(entry)
        except Exception:
            self._dirty = True
            logger.warning("schedules: polling the backend failed; trying again in %ss", POLL_S, exc_info=True)

    def records(self) -> list[ScheduleRecord]:
        """What this node publishes about its durable schedules."""
        return [
            ScheduleRecord(e.name, e.spec.text, _tz_name(e.spec.tz), e.queue, e.missed)
            for e in self._entries.values()
            if e.durable
        ]

    # ------------------------------------------------------------------------------- operations, info

    async def trigger(self, name: str) -> None:
        """One run now: here for an in-process schedule; by whichever node takes the request for a durable one."""
        entry = self.entry(name)
        backend = self.schedule_backend() if entry.durable else None
        if backend is not None:
            await backend.request_schedule_run(name)
            self._poke()
            return
        if not self._open:
            raise ConfigurationError("trigger_schedule needs a started manager")
        if entry.push(None, True):
            self._drain(entry)

    async def set_paused(self, name: str, paused: bool) -> None:
        """Pause or resume ``name`` (durable: in the backend, for every node)."""
        entry = self.entry(name)
        backend = self.schedule_backend() if entry.durable else None
        if backend is not None:
            await backend.set_schedule_paused(name, paused)
        entry.paused = paused if backend is None else False

    async def events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest events of ``name`` (durable: every node's, from the backend)."""
        entry = self.entry(name)
        backend = self.schedule_backend() if entry.durable else None
        if backend is not None:
            return await backend.schedule_events(name, limit)
        return list(entry.events)[:limit]

    async def infos(self, upcoming: int) -> list[ScheduleInfo]:
        """``TaskManager.schedules()``."""
        backend = self.schedule_backend()
        durable = [e.name for e in self._entries.values() if e.durable]
        states = await backend.schedule_states(durable) if backend is not None and durable else {}
        now = self.now_ms()
        out: list[ScheduleInfo] = []
        for entry in self._entries.values():
            state = states.get(entry.name)
            paused = state.paused if state is not None else entry.paused
            last = state.last_event if state is not None else (entry.events[0] if entry.events else None)
            zone = entry.spec.tz
            try:
                ticks = entry.spec.upcoming(now, upcoming)
            except ScheduleSpecError:
                ticks = []
            out.append(
                ScheduleInfo(
                    name=entry.name,
                    spec=entry.spec.text,
                    tz=_tz_name(zone),
                    durable=entry.durable,
                    queue=entry.queue,
                    missed=entry.missed,
                    paused=paused,
                    next_runs=tuple(datetime.fromtimestamp(t / 1000, zone) for t in ticks),
                    last_run=None if last is None else datetime.fromtimestamp(last.at_ms / 1000, zone),
                    last_outcome=None if last is None else last.kind,
                    last_task_id="" if last is None else last.task_id,
                    last_error="" if last is None else last.error,
                    fired=entry.fired,
                    skipped=entry.skipped,
                )
            )
        return out


def _tz_name(zone: tzinfo) -> str:
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)
