"""The SQL of each backend operation: plain functions of a connection, run in the writer or reader thread."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from worker_core.durable.outcomes import dead_letter_outcome
from worker_core.durable.types import DEAD_PRUNE_LIMIT, DurableTaskLease, delivery_limit, lease_token
from worker_core.errors import DurableTaskExistsError, LeaseLostError

from ._nodes import Heartbeat, beat
from ._rows import LEASE_COLUMNS, as_int, as_str, decode_row, string_map

__all__ = (
    "DequeueState",
    "Wake",
    "chunks",
    "dequeue",
    "enqueue_rows",
    "fenced",
    "marks",
    "next_event_time",
    "stored_ids",
)

_INSERT: Final = (
    "INSERT OR IGNORE INTO tasks (id, queue, handler, payload, priority, weight, retries, retry_delay, metadata, "
    "idempotency_key, state, ready_at, enqueued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OUTCOME_SWEEP: Final = 100  # expired outcomes one write removes at most
_CHUNK: Final = 500  # ids per statement (SQLite's bound-parameter limit is far above)
_FENCE: Final = "id = ? AND state = 'leased' AND token = ?"


_EARLIEST_DELAYED: Final = "SELECT MIN(ready_at) FROM tasks WHERE state = 'delayed'"
# Per unpaused queue, through tasks_waiting_queue (queue, ready_at): its partial-index condition is repeated
# word for word (state IN ...), which is what lets SQLite use that index; the planner took tasks_delayed otherwise.
_EARLIEST_UNPAUSED: Final = (
    "SELECT MIN((SELECT MIN(ready_at) FROM tasks WHERE queue = q.name AND state IN ('ready', 'delayed') "
    "AND state = 'delayed')) FROM queues AS q WHERE q.paused = 0"
)
_READY_QUEUES: Final = """WITH RECURSIVE ready(name) AS (
        SELECT (SELECT MIN(queue) FROM tasks WHERE state = 'ready')
        UNION ALL
        SELECT (SELECT MIN(queue) FROM tasks WHERE state = 'ready' AND queue > ready.name) FROM ready
        WHERE ready.name IS NOT NULL
    ) SELECT name FROM ready WHERE name IS NOT NULL"""


def enqueue_rows(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[uuid.UUID]:
    """Insert ``rows`` (from :func:`~worker_sqlite._rows.task_row`); the ids skipped as duplicates, in order.

    A row is skipped when its id is stored (in any state, the DLQ included) or its idempotency key belongs
    to a live task (ready, delayed or leased), an earlier row of the same call included.
    """
    skipped: list[uuid.UUID] = []
    queues: set[str] = set()
    for row in rows:
        if db.execute(_INSERT, row).rowcount == 1:
            queues.add(row[1])
        else:
            skipped.append(uuid.UUID(row[0]))
    db.executemany("INSERT OR IGNORE INTO queues (name) VALUES (?)", [(q,) for q in sorted(queues)])
    return skipped


def raise_skipped(skipped: Sequence[uuid.UUID]) -> None:
    """Raise :class:`DurableTaskExistsError` naming ``skipped`` (nothing when empty)."""
    if skipped:
        shown = ", ".join(str(i) for i in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        raise DurableTaskExistsError(
            f"{len(skipped)} durable task(s) already exist (same id, or a live task has the idempotency key): {shown}",
            ids=skipped,
        )


@dataclass(slots=True)
class DequeueState:
    """The weighted round robin's turn, carried from one dequeue call to the next (as the memory backend)."""

    queue: str = ""
    credit: int = 0
    weights: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Dequeued:
    """What one dequeue transaction did."""

    leases: list[DurableTaskLease]
    dead: list[tuple[str, str]]  # (task id, reason) dead-lettered by this call
    requeued: int
    outcomes: list[str] = field(default_factory=list)  # ids whose FAILED outcome this call stored


def dequeue(
    db: sqlite3.Connection,
    state: DequeueState,
    now: float,
    limit: int,
    lease_s: float,
    extra: int,
    heartbeat: Heartbeat | None,
    outcome_ttl: float | None = None,
    *,
    node: str,
    dead_ttl: float | None = None,
) -> Dequeued:
    """Requeue expired leases, promote due delayed tasks, then lease up to ``limit`` due tasks.

    Shares the call among unpaused queues by weighted round robin (the turn carries over in ``state``);
    within a queue: lowest priority, then highest weight, then earliest ready time, then enqueue order.
    A row past its delivery limit, or one that cannot be decoded, is dead-lettered with the reason, and (with
    ``outcome_ttl``) a FAILED outcome saying so is stored for it, so that whoever awaits it learns at once.
    Each lease's token starts with ``node``, the id of the node taking it (``TaskRecord.leased_by``).
    When it dead-lettered a row, dead tasks older than ``dead_ttl`` are pruned (:func:`prune_dead`).
    """
    # An expired lease goes back with its ready time kept: it is redelivered ahead of the tasks that came after it.
    requeued = db.execute(
        "UPDATE tasks SET state = 'ready', token = '' WHERE state = 'leased' AND expires_at <= ?", (now,)
    ).rowcount
    db.execute("UPDATE tasks SET state = 'ready' WHERE state = 'delayed' AND ready_at <= ?", (now,))
    if heartbeat is not None:
        beat(db, *heartbeat, now=now, leases=-1)
    out = Dequeued([], [], requeued)
    if paused(db):
        return out
    # The queues that have ready tasks, by a skip-scan of the due index (one seek per such queue), less the
    # paused ones: never every queue name ever used (10,000 drained queues made a dequeue take 46 ms).
    held = {r[0] for r in db.execute("SELECT name FROM queues WHERE paused = 1")}
    names = [r[0] for r in db.execute(_READY_QUEUES) if isinstance(r[0], str) and r[0] not in held]
    if not names:
        return out
    index = next((i for i, n in enumerate(names) if n >= state.queue), len(names))
    if index == len(names) or names[index] != state.queue:
        state.credit = 0
    index %= len(names)
    idle = 0
    select = (
        f"SELECT {LEASE_COLUMNS} FROM tasks WHERE state = 'ready' AND queue = ? "
        "ORDER BY priority, weight DESC, ready_at, seq LIMIT ?"
    )
    while len(out.leases) < limit and idle < len(names):
        name = names[index]
        if state.credit <= 0:
            state.credit = state.weights.get(name, 1)
        rows = db.execute(select, (name, min(state.credit, limit - len(out.leases)))).fetchall()
        served = 0
        for row in rows:
            decoded = decode_row(row)
            if isinstance(decoded, str):
                reason = f"corrupt record: {decoded}"
                _dead_letter(db, row[0], reason, now)
                out.dead.append((str(row[1]), reason))
                _dead_outcome(db, out, row, reason, now, outcome_ttl)
                continue
            task, attempts = decoded
            if attempts >= delivery_limit(task.retries or 0, extra):
                reason = f"delivery limit: delivered {attempts} times without settling"
                _dead_letter(db, row[0], reason, now)
                out.dead.append((str(task.id), reason))
                _dead_outcome(db, out, row, reason, now, outcome_ttl)
                continue
            token = lease_token(node)
            expires = now + lease_s
            db.execute(
                "UPDATE tasks SET state = 'leased', attempts = attempts + 1, token = ?, leased_at = ?, expires_at = ? "
                "WHERE seq = ?",
                (token, now, expires, row[0]),
            )
            out.leases.append(DurableTaskLease(task, str(task.id), attempts + 1, task.retries or 0, token, expires))
            served += 1
        if not rows:
            idle += 1
            state.credit = 0
        else:
            idle = 0
            state.credit -= served
        if state.credit <= 0:
            index = (index + 1) % len(names)
    state.queue = names[index]
    if out.dead:
        prune_dead(db, now, dead_ttl)
    return out


def _dead_outcome(
    db: sqlite3.Connection, out: Dequeued, row: Sequence[Any], reason: str, now: float, ttl: float | None
) -> None:
    """Store the FAILED outcome of a task this dequeue dead-lettered (not when its id is not a UUID)."""
    if ttl is None:
        return
    _seq, raw_id, queue, handler, *_rest = row
    attempts, metadata = row[10], row[9]
    try:
        task_id = uuid.UUID(raw_id) if isinstance(raw_id, str) else None
    except ValueError:
        task_id = None
    if task_id is None:
        return
    outcome = dead_letter_outcome(
        task_id,
        reason,
        handler=as_str(handler),
        queue=as_str(queue),
        attempts=as_int(attempts),
        metadata=string_map(metadata),
    )
    store_outcome(db, str(task_id), outcome.queue, outcome.encode(), now + ttl, now)
    out.outcomes.append(str(task_id))


def _dead_letter(db: sqlite3.Connection, seq: int, reason: str, now: float) -> None:
    db.execute(
        "UPDATE tasks SET state = 'dead', token = '', last_error = ?, error_type = '', traceback = '', failed_at = ? "
        "WHERE seq = ?",
        (reason, now, seq),
    )


def prune_dead(db: sqlite3.Connection, now: float, dead_ttl: float | None) -> int:
    """Delete up to ``DEAD_PRUNE_LIMIT`` of the oldest dead tasks that failed before ``now - dead_ttl``.

    Called in the transaction that dead-letters a task; ``dead_ttl=None`` keeps every dead task. Walks the
    ``tasks_dead`` index from its oldest end. A dead task holds no idempotency key; outcomes keep their own expiry.
    """
    if dead_ttl is None:
        return 0
    return db.execute(
        "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE state = 'dead' AND failed_at < ? "
        "ORDER BY failed_at, seq LIMIT ?)",
        (now - dead_ttl, DEAD_PRUNE_LIMIT),
    ).rowcount


def paused(db: sqlite3.Connection) -> bool:
    """Whether the global pause is set."""
    row = db.execute("SELECT value FROM settings WHERE name = 'paused'").fetchone()
    return row is not None and row[0] == "1"


def fenced(db: sqlite3.Connection, sql: str, args: Sequence[Any], lease: DurableTaskLease) -> None:
    """Run ``sql`` (whose WHERE ends with the fence) for ``lease``; :class:`LeaseLostError` if it matched nothing."""
    if db.execute(sql, (*args, lease.lease_id, lease.token)).rowcount != 1:
        raise LeaseLostError(f"lease on durable task {lease.lease_id} is no longer held")


def ack(db: sqlite3.Connection, lease: DurableTaskLease) -> None:
    """Delete the task of ``lease``."""
    fenced(db, f"DELETE FROM tasks WHERE {_FENCE}", (), lease)


def nack(db: sqlite3.Connection, lease: DurableTaskLease, ready_at: float, now: float) -> None:
    """Make the task ready again at ``ready_at``."""
    state = "ready" if ready_at <= now else "delayed"
    fenced(db, f"UPDATE tasks SET state = ?, ready_at = ?, token = '' WHERE {_FENCE}", (state, ready_at), lease)


def fail(
    db: sqlite3.Connection, lease: DurableTaskLease, error: str, now: float, dead_ttl: float | None = None
) -> None:
    """Dead-letter the task with ``error`` (and its ``error_type`` and ``traceback``), then :func:`prune_dead`."""
    kind = str(getattr(error, "error_type", "") or "")
    trace = str(getattr(error, "traceback", "") or "")
    fenced(
        db,
        "UPDATE tasks SET state = 'dead', token = '', last_error = ?, error_type = ?, traceback = ?, failed_at = ? "
        f"WHERE {_FENCE}",
        (str(error), kind, trace, now),
        lease,
    )
    prune_dead(db, now, dead_ttl)


def extend(db: sqlite3.Connection, lease: DurableTaskLease, until: float) -> None:
    """Push the lease's expiry to ``until``."""
    fenced(db, f"UPDATE tasks SET expires_at = ? WHERE {_FENCE}", (until,), lease)


def extend_many(
    db: sqlite3.Connection,
    leases: Sequence[DurableTaskLease],
    until: float,
    now: float,
    heartbeat: Heartbeat | None,
) -> list[bool]:
    """Renew each lease; per lease whether it is still held. Heartbeats the node in the same transaction."""
    sql = f"UPDATE tasks SET expires_at = ? WHERE {_FENCE}"
    held = [db.execute(sql, (until, lease.lease_id, lease.token)).rowcount == 1 for lease in leases]
    if heartbeat is not None:
        beat(db, *heartbeat, now=now, leases=len(leases))
    return held


def release(db: sqlite3.Connection, leases: Sequence[DurableTaskLease], now: float) -> int:
    """Make leased tasks ready now without counting the delivery; leases no longer current are skipped."""
    sql = f"UPDATE tasks SET state = 'ready', ready_at = ?, token = '', attempts = MAX(attempts - 1, 0) WHERE {_FENCE}"
    return sum(db.execute(sql, (now, lease.lease_id, lease.token)).rowcount for lease in leases)


def store_outcome(db: sqlite3.Connection, task_id: str, queue: str, data: bytes, expires_at: float, now: float) -> None:
    """Keep an outcome until ``expires_at`` (replacing an older one of the task); sweep a few expired ones."""
    db.execute(
        "DELETE FROM outcomes WHERE seq IN (SELECT seq FROM outcomes WHERE expires_at <= ? LIMIT ?)",
        (now, _OUTCOME_SWEEP),
    )
    db.execute("DELETE FROM outcomes WHERE id = ?", (task_id,))
    db.execute(
        "INSERT INTO outcomes (id, queue, data, expires_at) VALUES (?, ?, ?, ?)", (task_id, queue, data, expires_at)
    )


def next_event_time(db: sqlite3.Connection, now: float) -> float | None:
    """When something may next become leasable (``None``: nothing is waiting).

    ``now`` if a task of an unpaused queue is due, else the earliest delayed task (of an unpaused queue) or
    lease expiry.
    """
    expiry = db.execute("SELECT MIN(expires_at) FROM tasks WHERE state = 'leased'").fetchone()[0]
    times = [float(expiry)] if isinstance(expiry, int | float) else []
    if not paused(db):
        due = db.execute(
            "SELECT 1 FROM tasks WHERE state = 'ready' AND queue IN (SELECT name FROM queues WHERE paused = 0) LIMIT 1"
        ).fetchone()
        if due is not None:
            return now
        # With a queue paused, its delayed tasks must not cost a walk: the earliest of each unpaused queue is
        # one probe of its (queue, ready_at) index (none of them has a ready task, checked just above). The
        # earliest of the delayed index filtered by queue walked every delayed task of the paused queues
        # first: 100,000 of them made each idle poll take 22 ms.
        any_paused = db.execute("SELECT 1 FROM queues WHERE paused = 1 LIMIT 1").fetchone() is not None
        delayed = db.execute(_EARLIEST_UNPAUSED if any_paused else _EARLIEST_DELAYED).fetchone()[0]
        if isinstance(delayed, int | float):
            times.append(float(delayed))
    return min(times) if times else None


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    """``items`` in slices of at most 500 (one statement each)."""
    for first in range(0, len(items), _CHUNK):
        yield items[first : first + _CHUNK]


def marks(items: Sequence[object]) -> str:
    """One ``?`` per item, comma-separated (an ``IN (...)`` list)."""
    return ",".join("?" * len(items))


def stored_ids(db: sqlite3.Connection, table: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` have a row in ``table`` (``tasks`` or ``outcomes``), one query per 500 ids."""
    found: set[str] = set()
    for chunk in chunks(ids):
        found.update(r[0] for r in db.execute(f"SELECT id FROM {table} WHERE id IN ({marks(chunk)})", chunk))
    return found


class Wake:
    """What a committed operation makes ready: work for idle workers, outcomes for their waiters."""

    __slots__ = ("outcomes", "skipped", "value", "work")

    def __init__(
        self,
        *,
        work: bool = False,
        outcomes: Sequence[str] = (),
        skipped: Sequence[uuid.UUID] = (),
        value: Any = None,
    ) -> None:
        self.work = work
        self.outcomes = outcomes
        self.skipped = list(skipped)
        self.value = value
