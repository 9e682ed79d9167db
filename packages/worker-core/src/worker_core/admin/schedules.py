"""``ScheduleStoreAdmin``: :class:`~worker_core.admin.ScheduleAdmin` over a backend's shared schedule state.

Durable schedules live in the nodes that register them; what they share through a backend with the
:class:`~worker_core.schedules.ScheduleBackend` capability (the records nodes publish, pause flags, last ticks,
run requests, events) is all an admin can see or change. Each backend's admin (``RedisAdmin``, ``SqliteAdmin``,
``PostgresAdmin``) hands its schedule methods to one of these::

    admin = ScheduleStoreAdmin(backend)
    for s in await admin.schedules():
        print(s.name, s.spec, s.paused, s.next_run_ms)
    await admin.pause_schedule("nightly")    # every node skips its ticks until resumed
    await admin.run_schedule_now("nightly")  # "" : one node that runs it takes the request and enqueues the task
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, final

from worker_core.errors import ConfigurationError, ScheduleSpecError
from worker_core.schedules.spec import parse_spec
from worker_core.schedules.types import ScheduleBackend, ScheduleEvent, ScheduleRecord, ScheduleState

from .browse import ScheduleSummary

__all__ = ("SCHEDULE_LIST_LIMIT", "ScheduleStoreAdmin")

#: Schedules one listing returns at most (by name).
SCHEDULE_LIST_LIMIT: Final = 1000
_RUN_KINDS: Final = frozenset({"enqueued", "fired", "triggered"})


def summary(record: ScheduleRecord, state: ScheduleState, now_ms: int) -> ScheduleSummary:
    """One listing row: the next tick from the spec (0 when paused or unparsable), the last run from the state."""
    next_ms = 0
    if not state.paused:
        try:
            next_ms = parse_spec(record.spec, record.tz).next_after(now_ms)
        except ScheduleSpecError:
            next_ms = 0  # a spec this version cannot read (a newer node published it): shown, never raised
    event = state.last_event
    last_ms = state.last_tick_ms or 0
    if event is not None and event.kind in _RUN_KINDS:
        last_ms = max(last_ms, event.at_ms)
    return ScheduleSummary(
        name=record.name,
        handler="",
        queue=record.queue,
        spec=record.spec,
        next_run_ms=next_ms,
        last_run_ms=last_ms,
        paused=state.paused,
        tz=record.tz,
        last_outcome="" if event is None else event.kind,
    )


@final
class ScheduleStoreAdmin:
    """The schedules some node published to ``store``, with their shared state; pause, resume, run now, events.

    Args:
        store: a durable backend with the ``ScheduleBackend`` capability.
        clock: epoch seconds (for the next run).

    Raises:
        ConfigurationError: ``store`` lacks the capability (construction); a schedule name no node published
            (pause, resume, run now).
    """

    def __init__(self, store: object, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(store, ScheduleBackend):
            raise ConfigurationError(f"{type(store).__name__} keeps no durable schedules (no ScheduleBackend)")
        self._store = store
        self._clock = clock

    async def schedules(self) -> list[ScheduleSummary]:
        """Every published schedule, by name (at most :data:`SCHEDULE_LIST_LIMIT`)."""
        records = (await self._store.list_schedules())[:SCHEDULE_LIST_LIMIT]
        states = await self._store.schedule_states([r.name for r in records]) if records else {}
        now_ms = int(self._clock() * 1000)
        return [summary(r, states.get(r.name, ScheduleState()), now_ms) for r in records]

    async def pause_schedule(self, name: str) -> None:
        """Pause ``name`` on every node (its ticks are skipped until resumed)."""
        await self._known(name)
        await self._store.set_schedule_paused(name, True)

    async def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule."""
        await self._known(name)
        await self._store.set_schedule_paused(name, False)

    async def run_schedule_now(self, name: str) -> str:
        """Request one run; ``""``: exactly one node that runs ``name`` takes it at its next poll (about 1 s)."""
        await self._known(name)
        await self._store.request_schedule_run(name)
        return ""

    async def schedule_events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name`` (1 to 1,000), newest first."""
        return await self._store.schedule_events(name, min(max(int(limit), 1), 1000))

    async def _known(self, name: str) -> None:
        if not any(r.name == name for r in await self._store.list_schedules()):
            raise ConfigurationError(f"no schedule named {name!r} (a node publishes its schedules when it starts)")
