"""The admin's row parsing and multi-row SQL: records from rows, fenced moves."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

from worker_core.admin import DLQEntry, MoveResult, TaskRecord, TaskState
from worker_core.durable.types import lease_holder

from ._conn import Op
from ._ops import Wake, stored_ids
from ._rows import as_int, as_str, ms, string_map

__all__ = ("RECORD_COLUMNS", "Moved", "absent", "clean_ids", "entry", "make_ready", "record", "run_move")

_STATES: Final = {
    "ready": TaskState.READY,
    "delayed": TaskState.READY,
    "leased": TaskState.PROCESSING,
    "dead": TaskState.DEAD,
}
RECORD_COLUMNS: Final = (
    "id, state, handler, queue, priority, weight, retries, retry_delay, attempts, ready_at, enqueued_at, "
    "leased_at, expires_at, failed_at, last_error, metadata, length(payload), error_type, traceback, token"
)


def record(row: Sequence[Any]) -> TaskRecord:
    (task_id, state, handler, queue, priority, weight, retries, delay, attempts, ready_at, enqueued_at) = row[:11]
    leased_at, expires_at, failed_at, last_error, metadata, size, error_type, trace, token = row[11:]
    status = _STATES.get(as_str(state), TaskState.UNKNOWN)
    error = as_str(last_error)
    reason = ""
    if status is TaskState.DEAD:
        reason = error if error.startswith(("delivery limit", "corrupt record")) else "failed"
    score = {TaskState.READY: ms(ready_at), TaskState.PROCESSING: ms(expires_at)}.get(status, 0)
    return TaskRecord(
        id=as_str(task_id),
        status=status,
        handler=as_str(handler),
        queue=as_str(queue),
        priority=as_int(priority),
        weight=as_int(weight),
        retries=as_int(retries),
        retry_delay_ms=ms(delay),
        attempts=as_int(attempts),
        ready_at_ms=ms(ready_at),
        updated_at_ms=max(ms(enqueued_at), ms(leased_at), ms(failed_at)),
        lease_at_ms=ms(leased_at),
        failed_at_ms=ms(failed_at),
        last_error=error,
        metadata=string_map(metadata),
        payload_size=as_int(size),
        score=score,
        error_type=as_str(error_type),
        error_traceback=as_str(trace),
        dead_reason=reason,
        leased_by=lease_holder(as_str(token)) if status is TaskState.PROCESSING else "",
    )


def entry(record: TaskRecord, now_ms: int) -> DLQEntry:
    since = record.failed_at_ms or record.updated_at_ms
    return DLQEntry(
        id=record.id,
        queue=record.queue,
        handler=record.handler,
        attempts=record.attempts,
        age_ms=max(0, now_ms - since) if since else 0,
        last_error=record.last_error,
    )


def clean_ids(ids: Iterable[str]) -> list[str]:
    """Trimmed, split on commas, de-duplicated ids (order kept)."""
    if isinstance(ids, str):
        ids = [ids]
    out: dict[str, None] = {}
    for raw in ids:
        for part in str(raw).split(","):
            if part.strip():
                out[part.strip()] = None
    return list(out)


class Moved:
    """What one move did: how many tasks, which ids were stored nowhere, whether idle workers should wake."""

    __slots__ = ("count", "missing", "wake")

    def __init__(self, count: int, missing: Sequence[str], *, wake: bool = True) -> None:
        self.count, self.missing, self.wake = count, missing, wake


def absent(db: sqlite3.Connection, ids: Sequence[str]) -> list[str]:
    """Those of ``ids`` that have no stored task (order kept)."""
    found = stored_ids(db, "tasks", ids)
    return [i for i in ids if i not in found]


async def run_move(write: Callable[[Op], Awaitable[Any]], op: Callable[[sqlite3.Connection], Moved]) -> MoveResult:
    """Run the move ``op`` in one write transaction; wakes idle workers when it made tasks ready."""

    def run(db: sqlite3.Connection) -> Wake:
        moved = op(db)
        return Wake(work=moved.wake and moved.count > 0, value=moved)

    done: Wake = await write(run)
    moved: Moved = done.value
    return MoveResult(moved.count, tuple(moved.missing))


def make_ready(
    db: sqlite3.Connection,
    ids: Sequence[str],
    condition: str,
    ready_at: float,
    queue: str,
    reset_attempts: bool,
    *,
    now: float | None = None,
) -> int:
    """Make the tasks ``ids`` matching ``condition`` ready at ``ready_at``; their token is cleared (fenced).

    A task whose idempotency key a live task holds meanwhile is left where it is (not counted). A moved task's
    stored outcome is deleted (in the same transaction).
    """
    now = ready_at if now is None else now
    state = "ready" if ready_at <= now else "delayed"
    sets = "state = ?, ready_at = ?, token = '', expires_at = 0"
    args: list[Any] = [state, ready_at]
    if queue:
        sets += ", queue = ?"
        args.append(queue)
        db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
    if reset_attempts:
        sets += ", attempts = 0"
    count = 0
    for task_id in ids:
        moved = db.execute(f"UPDATE OR IGNORE tasks SET {sets} WHERE id = ? AND {condition}", (*args, task_id)).rowcount
        if moved:  # it runs again: the outcome of its earlier run goes, so a handle waits for the new one
            db.execute("DELETE FROM outcomes WHERE id = ?", (task_id,))
        count += moved
    return count
