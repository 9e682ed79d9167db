"""Queue summaries: per-queue counts, due backlog and pause flags (``SqliteAdmin.overview``), the known queues."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from worker_core.admin import Overview, QueueInfo

from . import _ops as ops

__all__ = ("dead_count", "overview", "queue_names")


def dead_count(db: sqlite3.Connection) -> int:
    """How many tasks are dead-lettered."""
    count: int = db.execute("SELECT COUNT(*) FROM tasks WHERE state = 'dead'").fetchone()[0]
    return count


def queue_names(db: sqlite3.Connection) -> list[str]:
    """Every queue the file knows, sorted."""
    return [r[0] for r in db.execute("SELECT name FROM queues ORDER BY name")]


def overview(
    db: sqlite3.Connection, wanted: Sequence[str], *, default_queue: str, count_dead: bool, now: float
) -> Overview:
    """The counts of the ``wanted`` queues (resolved names; empty: every queue), in one read.

    Ready counts include delayed tasks; ``due`` and the oldest due age count ready rows only.
    """
    known = {r[0]: bool(r[1]) for r in db.execute("SELECT name, paused FROM queues")}
    counts: dict[str, dict[str, int]] = {}
    for queue, state, count in db.execute("SELECT queue, state, COUNT(*) FROM tasks GROUP BY queue, state"):
        counts.setdefault(queue, {})[state] = count
    due = {
        q: (n, oldest)
        for q, n, oldest in db.execute(
            "SELECT queue, COUNT(*), MIN(ready_at) FROM tasks WHERE state = 'ready' GROUP BY queue"
        )
    }
    names = list(wanted) or sorted(set(known) | set(counts)) or [default_queue]
    infos = []
    for name in names:
        c = counts.get(name, {})
        n_due, oldest = due.get(name, (0, None))
        age = max(0.0, now - oldest) if isinstance(oldest, int | float) else 0.0
        infos.append(
            QueueInfo(
                name=name,
                ready=c.get("ready", 0) + c.get("delayed", 0),
                processing=c.get("leased", 0),
                dead=c.get("dead", 0) if count_dead else None,
                paused=known.get(name, False),
                due=n_due,
                oldest_due_age_s=age,
            )
        )
    paused_queues = tuple(sorted(n for n, p in known.items() if p))
    return Overview(tuple(sorted(infos, key=lambda q: q.name)), dead_count(db), ops.paused(db), paused_queues)
