"""Schedule state in Redis: the backend's ``ScheduleBackend`` part (worker_core.schedules).

A tick's task is stored by ``lua/enqueue_tick.lua``, which checks the pause flag, sets the tick's marker
(``SET`` with a TTL, only if absent) and writes the task, the last tick and an event, all in one script call:
two nodes firing the same tick store one task. Run requests are listed and taken by ``lua/schedule_runs.lua``
(``HKEYS``, then ``HDEL``: one taker each). The other reads and writes are single commands or one pipeline.
Keys: ``keys.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, final

from worker_core.durable.types import DurableTask
from worker_core.schedules.types import (
    PUBLISHED_TTL_S,
    MissedPolicy,
    ScheduleEvent,
    ScheduleRecord,
    ScheduleState,
    TickResult,
)

from ._errors import redis_errors
from ._records import enqueue_args, now_ms
from .keys import Keys

__all__ = ("RedisSchedules",)

_EVENT_LIMIT: Final = 100  # events kept per schedule by the tick script
_RESULTS: Final = {1: TickResult.ENQUEUED, 0: TickResult.DUPLICATE, 2: TickResult.PAUSED}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _event(raw: Any) -> ScheduleEvent | None:
    try:
        return ScheduleEvent.from_json(json.loads(raw))
    except (ValueError, TypeError):
        return None  # a corrupt entry is skipped, never raised


@final
class RedisSchedules:
    """Schedule markers, state and events of one deployment (prefix).

    Args:
        keys: the deployment's key names.
        prefix: ``"P:"``, what scripts build keys from.
        where: the server's name for errors.
        client: the current redis-py client (the backend may replace it when it finds a Cluster).
        script: the backend's bound script by name (``"enqueue_tick"``, ``"schedule_runs"``).
        connect: awaited before the first command.
        default_queue: the queue of a task that names none.
    """

    def __init__(
        self,
        keys: Keys,
        prefix: str,
        where: str,
        client: Callable[[], Any],
        script: Callable[[str], Any],
        connect: Callable[[], Awaitable[None]],
        default_queue: Callable[[], str],
    ) -> None:
        self._keys = keys
        self._p = prefix
        self._where = where
        self._client = client
        self._script = script
        self._connect = connect
        self._default_queue = default_queue

    async def enqueue_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str = ""
    ) -> TickResult:
        """See :meth:`worker_core.schedules.ScheduleBackend.enqueue_tick`."""
        await self._connect()
        now = now_ms()
        event = ScheduleEvent(schedule, "enqueued", now, tick_ms, str(task.id), node)
        args: list[Any] = [
            self._p,
            now,
            64,
            schedule,
            tick_ms,
            max(1, round(ttl * 1000)),
            json.dumps(event.to_json(), separators=(",", ":")),
            _EVENT_LIMIT,
        ]
        enqueue_args(task, self._default_queue(), now, args)
        keys = (self._keys.queues, self._keys.wake)
        with redis_errors(self._where):
            result = await self._script("enqueue_tick")(keys, args)
        return _RESULTS[int(result)]

    async def publish(self, records: Sequence[ScheduleRecord]) -> None:
        """One JSON record per schedule in ``P:schedules``, stamped now; expired records dropped (one script)."""
        await self._connect()
        now = now_ms()
        args: list[Any] = [now - round(PUBLISHED_TTL_S * 1000)]
        for r in records:
            args += (r.name, json.dumps({**r.to_json(), "published_ms": now}, separators=(",", ":")))
        with redis_errors(self._where):
            await self._script("schedule_publish")((self._keys.schedules,), args)

    async def listed(self) -> list[ScheduleRecord]:
        """Every published record (a corrupt one is skipped), by name."""
        await self._connect()
        with redis_errors(self._where):
            raw = await self._client().hgetall(self._keys.schedules)
        out: list[ScheduleRecord] = []
        cutoff = now_ms() - round(PUBLISHED_TTL_S * 1000)
        for name, value in raw.items():
            try:
                data = json.loads(value)
                published = data.get("published_ms")
                if isinstance(published, int) and published < cutoff:
                    continue  # nobody republished it: dropped at the next publication
                missed: MissedPolicy = "once" if data.get("missed") == "once" else "skip"
                out.append(ScheduleRecord(_text(name), str(data["spec"]), str(data["tz"]), str(data["queue"]), missed))
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
        return sorted(out, key=lambda r: r.name)

    async def states(self, names: Sequence[str]) -> dict[str, ScheduleState]:
        """Paused flags, last ticks and last events of ``names``, in one pipeline."""
        if not names:
            return {}
        await self._connect()
        k = self._keys
        with redis_errors(self._where):
            pipe = self._client().pipeline(transaction=False)
            pipe.smismember(k.schedule_paused, list(names))
            pipe.hmget(k.schedule_last, list(names))
            for name in names:
                pipe.lindex(k.schedule_events(name), 0)
            replies = await pipe.execute()
        paused, last, *events = replies
        out: dict[str, ScheduleState] = {}
        for i, name in enumerate(names):
            tick = last[i]
            try:
                last_tick = None if tick is None else int(tick)
            except ValueError:
                last_tick = None
            event = None if events[i] is None else _event(events[i])
            out[name] = ScheduleState(bool(paused[i]), last_tick, event)
        return out

    async def set_paused(self, name: str, paused: bool) -> None:
        """``SADD``/``SREM P:schedule:paused``."""
        await self._connect()
        with redis_errors(self._where):
            client = self._client()
            if paused:
                await client.sadd(self._keys.schedule_paused, name)
            else:
                await client.srem(self._keys.schedule_paused, name)

    async def request_run(self, name: str) -> None:
        """``HSET P:schedule:runs name now``: one node's next poll takes it."""
        await self._connect()
        with redis_errors(self._where):
            await self._client().hset(self._keys.schedule_runs, name, int(time.time() * 1000))

    async def take_runs(self, names: Sequence[str]) -> list[str]:
        """The requests pending for ``names``, taken: one call that lists them, a second only to take some."""
        if not names:
            return []
        await self._connect()
        keys = (self._keys.schedule_runs,)
        with redis_errors(self._where):
            pending = {_text(name) for name in await self._script("schedule_runs")(keys, [])}
            wanted = [name for name in names if name in pending] if pending else []
            if not wanted:
                return []  # the usual answer: one short call, no names sent
            taken = await self._script("schedule_runs")(keys, wanted)
        return [_text(name) for name in taken]

    async def record(self, event: ScheduleEvent, limit: int) -> None:
        """``LPUSH`` + ``LTRIM`` the schedule's event list."""
        await self._connect()
        key = self._keys.schedule_events(event.schedule)
        with redis_errors(self._where):
            pipe = self._client().pipeline(transaction=True)
            pipe.lpush(key, json.dumps(event.to_json(), separators=(",", ":")))
            pipe.ltrim(key, 0, max(1, limit) - 1)
            await pipe.execute()

    async def events(self, name: str, limit: int) -> list[ScheduleEvent]:
        """The newest ``limit`` events of ``name`` (corrupt entries skipped)."""
        await self._connect()
        with redis_errors(self._where):
            raw = await self._client().lrange(self._keys.schedule_events(name), 0, max(1, limit) - 1)
        return [event for item in raw if (event := _event(item)) is not None]
