"""Queue summaries: per-queue counts, due backlog and pause flags (``PostgresAdmin.overview``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from worker_core.admin import QueueInfo

__all__ = ("OVERVIEW", "QUEUE_NAMES", "queue_infos")

#: Per known queue: name, paused, ready, leased, dead, due counts and the oldest due task's age in seconds.
OVERVIEW: Final = """SELECT q.name, q.paused,
                   count(*) FILTER (WHERE t.state = 'ready'),
                   count(*) FILTER (WHERE t.state = 'leased'),
                   count(*) FILTER (WHERE t.state = 'dead'),
                   count(*) FILTER (WHERE t.state = 'ready' AND t.available_at <= clock_timestamp()),
                   extract(epoch FROM clock_timestamp() - min(t.ready_at) FILTER (
                       WHERE t.state = 'ready' AND t.available_at <= clock_timestamp()))::float8
               FROM {s}.queues q LEFT JOIN {s}.tasks t ON t.queue = q.name
               WHERE %(names)s::text[] IS NULL OR q.name = ANY(%(names)s::text[])
               GROUP BY q.name, q.paused ORDER BY q.name"""

#: Every queue the schema knows, sorted.
QUEUE_NAMES: Final = "SELECT name FROM {s}.queues ORDER BY name"


def queue_infos(found: Sequence[tuple[Any, ...]], names: Sequence[str] | None, *, count_dead: bool) -> list[QueueInfo]:
    """The queues of :data:`OVERVIEW`'s rows, then the ``names`` asked for that the schema does not know (empty)."""
    infos = [
        QueueInfo(
            name=name,
            ready=int(ready),
            processing=int(leased),
            dead=int(dead) if count_dead else None,
            paused=bool(paused),
            due=int(due),
            oldest_due_age_s=max(0.0, float(age or 0.0)),
        )
        for name, paused, ready, leased, dead, due, age in found
    ]
    if names:
        known = {info.name for info in infos}
        infos += [QueueInfo(n, 0, 0, 0 if count_dead else None, False) for n in names if n not in known]
    return infos
