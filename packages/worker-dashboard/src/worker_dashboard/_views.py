"""The read pages (each also JSON under ``/api``): overview, queues, tasks, task detail, DLQ, workers, schedules."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from worker_core.admin import (
    BROWSE_PAGE_LIMIT,
    BROWSE_STATES,
    NodeInfo,
    ScheduleAdmin,
    TaskBrowser,
    TaskRecord,
    TaskState,
)
from worker_core.durable.outcomes import TaskOutcome
from worker_core.errors import ConfigurationError, TaskNotFoundError, WorkerError
from worker_core.status import TaskStatus

from ._app import parse_uuid, wants_json
from ._charts import sparkline
from ._redact import decode_payload
from ._security import Identity

if TYPE_CHECKING:
    from ._app import Dashboard

__all__ = ("PAGES", "overview_context", "queue_weights")

FINISHED_STATES = ("completed", "failed")
STATES = (*BROWSE_STATES, *FINISHED_STATES)
_AGES = {"": 0, "5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400}


def overview_context(board: Dashboard, overview: Any, samples: Any, nodes: int, error: str = "") -> dict[str, Any]:
    """What the overview page and its live fragment show."""
    recent = list(samples)[-120:]
    return {
        "ov": overview,
        "nodes": nodes,
        "error": error,
        "throughput": sparkline([s.throughput for s in recent]),
        "failures": sparkline([s.failure_rate for s in recent], top=1.0),
        "last": recent[-1] if recent else None,
        "has_results": board.results is not None,
        "refresh": board.sampler.interval,
    }


async def overview(board: Dashboard, request: Request, who: Identity) -> Response:
    """Per-queue counts and backlog age, totals, throughput and failure rate over time."""
    ov = await board.admin.overview()
    snap = board.sampler.snapshot
    nodes = len(snap.nodes) if snap.version else len(await board.admin.nodes())
    ctx = overview_context(board, ov, snap.samples, nodes)
    data = {
        **ov.to_json(),
        "nodes": nodes,
        "history": [
            {"at": s.at, "throughput": round(s.throughput, 3), "failure_rate": round(s.failure_rate, 4)}
            for s in snap.samples
        ],
    }
    return board.render(request, who, "overview.html", data, **ctx)


def queue_weights(nodes: Iterable[NodeInfo], queue: str) -> list[int]:
    """The distinct weights the live ``nodes`` that lease from ``queue`` dequeue it with, lowest first.

    A node that sets weights for other queues only uses 1 for this one; a node that reports no weights at all
    (none configured, or an older version that does not say) is left out. Empty: no node says.
    """
    found: set[int] = set()
    for node in nodes:
        if node.weights and (not node.queues or queue in node.queues):
            found.add(node.weights.get(queue, 1))
    return sorted(found)


async def queues(board: Dashboard, request: Request, who: Identity) -> Response:
    """Every queue with its pause flag, counts and the weights the live nodes use for it; global pause."""
    ov = await board.admin.overview()
    nodes = await board.admin.nodes()
    weights = {q.name: queue_weights(nodes, q.name) for q in ov.queues}
    data = ov.to_json()
    for item in data["queues"]:
        item["weights"] = weights[item["name"]]
    return board.render(request, who, "queues.html", data, ov=ov, weights=weights)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer") from None
    return max(low, min(high, value))


async def tasks(board: Dashboard, request: Request, who: Identity) -> Response:
    """Tasks by state with filters and paging, newest first; ``?id=`` jumps to one task."""
    q = request.query_params
    task_id = q.get("id", "").strip()
    if task_id and not wants_json(request):
        return RedirectResponse(f"{request.scope.get('root_path', '')}/tasks/{task_id}", 303)
    state = q.get("state", "ready") or "ready"
    if state not in STATES:
        raise ConfigurationError(f"state must be one of {', '.join(STATES)}")
    queue, handler = q.get("queue", "").strip(), q.get("handler", "").strip()
    newer, older = q.get("newer", ""), q.get("older", "")
    if newer not in _AGES or older not in _AGES:
        raise ConfigurationError(f"newer and older must be one of {', '.join(a for a in _AGES if a)}")
    limit = _int(request, "limit", 50, 1, BROWSE_PAGE_LIMIT)
    offset = _int(request, "offset", 0, 0, 1_000_000)
    now_ms = int(time.time() * 1000)
    since_ms = now_ms - _AGES[newer] * 1000 if newer else 0
    until_ms = now_ms - _AGES[older] * 1000 if older else 0
    ctx: dict[str, Any] = {
        "states": STATES,
        "state": state,
        "queue": queue,
        "handler": handler,
        "newer": newer,
        "older": older,
        "ages": [a for a in _AGES if a],
        "limit": limit,
        "offset": offset,
        "rows": [],
        "outcomes": [],
        "unsupported": "",
        "has_more": False,
        "truncated": False,
        "queues": await board.admin.queue_names(),
    }
    data: dict[str, Any]
    if state in FINISHED_STATES:
        if board.results is None:
            ctx["unsupported"] = "this backend keeps no results: finished tasks cannot be listed"
            data = {"error": ctx["unsupported"], "tasks": []}
        else:
            found = await _finished(board, state, ctx["queues"], queue, handler, since_ms, until_ms, offset + limit + 1)
            page = found[offset : offset + limit]
            ctx.update(outcomes=page, has_more=len(found) > offset + limit)
            data = {"state": state, "offset": offset, "limit": limit, "tasks": [_outcome_json(o) for o in page]}
    elif isinstance(board.admin, TaskBrowser):
        got = await board.admin.browse_tasks(
            state, queue=queue, handler=handler, since_ms=since_ms, until_ms=until_ms, limit=limit, offset=offset
        )
        ctx.update(rows=list(got.tasks), has_more=got.has_more, truncated=got.truncated)
        data = got.to_json()
    else:
        ctx["unsupported"] = "this backend cannot list tasks by state (see the DLQ page for dead tasks)"
        data = {"error": ctx["unsupported"], "tasks": []}
    data["supported"] = not ctx["unsupported"]
    return board.render(request, who, "tasks.html", data, **ctx)


async def _finished(
    board: Dashboard,
    state: str,
    names: list[str],
    queue: str,
    handler: str,
    since_ms: int,
    until_ms: int,
    want: int,
) -> list[TaskOutcome]:
    assert board.results is not None
    found: list[TaskOutcome] = []
    for name in [queue] if queue else names[:200]:
        for outcome in await board.results.recent_outcomes(name, 100):
            ok = outcome.status is TaskStatus.COMPLETED
            if ok != (state == "completed") or (handler and outcome.handler != handler):
                continue
            at = int(outcome.finished_at * 1000)
            if (since_ms and at < since_ms) or (until_ms and at > until_ms):
                continue
            found.append(outcome)
    found.sort(key=lambda o: -o.finished_at)
    return found[:want]


def _outcome_json(outcome: TaskOutcome) -> dict[str, Any]:
    return {
        "id": str(outcome.id),
        "handler": outcome.handler,
        "queue": outcome.queue,
        "status": outcome.status.name.lower(),
        "attempts": outcome.attempts,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "error_type": outcome.error_type,
        "error_message": outcome.error_message,
    }


def trace_id(metadata: dict[str, str]) -> str:
    """The W3C trace id in a task's ``traceparent`` metadata (empty when there is none)."""
    parts = metadata.get("traceparent", "").split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else ""


async def task(board: Dashboard, request: Request, who: Identity) -> Response:
    """One task: state, attempts, timestamps, error and traceback, redacted payload and metadata, outcome."""
    task_id = request.path_params["task_id"].strip()
    record: TaskRecord | None = None
    try:
        record = await board.admin.get(task_id)
    except TaskNotFoundError:
        record = None
    outcome: TaskOutcome | None = None
    tid = parse_uuid(task_id)
    if board.results is not None and tid is not None:
        outcome = await board.results.get_outcome(tid)
    if record is None and outcome is None:
        raise TaskNotFoundError(f"task {task_id} not found")
    traceback = error_type = reason = ""
    if record is not None:
        traceback, error_type, reason = record.error_traceback, record.error_type, record.dead_reason
        if record.status is TaskState.DEAD and not traceback:
            try:
                detail = await board.admin.dlq_entry(task_id)
                traceback, error_type = detail.traceback, detail.error_type
            except TaskNotFoundError:
                pass
    if outcome is not None and not traceback:
        traceback = outcome.traceback
    metadata = board.redactor.redact_mapping(dict(record.metadata if record else outcome.metadata if outcome else {}))
    payload_kind, payload = "unavailable", None
    if record is not None and isinstance(board.admin, TaskBrowser):
        try:
            payload_kind, payload = decode_payload(await board.admin.task_payload(task_id), board.redactor)
        except (TaskNotFoundError, WorkerError):
            payload_kind = "unavailable"
    result: Any = None
    if outcome is not None and outcome.result is not None:
        kind, shown = decode_payload(outcome.result, board.redactor)
        result = shown if kind == "json" else None
    task_json = {**record.to_json(), "metadata": metadata} if record else None
    data = {
        "task": task_json,
        "outcome": {**_outcome_json(outcome), "result": result, "traceback": outcome.traceback} if outcome else None,
        "metadata": metadata,
        "payload": payload,
        "payload_kind": payload_kind,
        "error_type": error_type,
        "traceback": traceback,
        "dead_reason": reason,
        "trace_id": trace_id(metadata),
    }
    return board.render(
        request,
        who,
        "task.html",
        data,
        task_id=task_id,
        rec=record,
        outcome=outcome,
        result=result,
        metadata=metadata,
        payload=payload,
        payload_kind=payload_kind,
        traceback=traceback,
        error_type=error_type,
        reason=reason,
        trace=trace_id(metadata),
    )


async def dlq(board: Dashboard, request: Request, who: Identity) -> Response:
    """The DLQ, newest first, filtered by queue, handler or a substring; replay, replay matching, purge."""
    q = request.query_params
    queue, handler, query = q.get("queue", "").strip(), q.get("handler", "").strip(), q.get("q", "").strip()
    limit = _int(request, "limit", 50, 1, 500)
    offset = _int(request, "offset", 0, 0, 1_000_000)
    page = await board.admin.dlq(limit=limit, offset=offset, queue=queue, handler=handler, query=query)
    data = {
        "entries": [e.to_json() for e in page.entries],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "scanned": page.scanned,
        "truncated": page.truncated,
    }
    filters = {"queue": queue, "handler": handler, "q": query}
    return board.render(request, who, "dlq.html", data, page=page, filters=filters, limit=limit, offset=offset)


async def workers(board: Dashboard, request: Request, who: Identity) -> Response:
    """Live worker nodes: heartbeat age, leases running now, queues."""
    nodes = await board.admin.nodes()
    now_ms = int(time.time() * 1000)
    return board.render(request, who, "workers.html", {"nodes": [n.to_json() for n in nodes]}, nodes=nodes, now=now_ms)


async def schedules(board: Dashboard, request: Request, who: Identity) -> Response:
    """Periodic schedules (next and last run; pause, resume, run now) when the backend has them."""
    if not isinstance(board.admin, ScheduleAdmin):
        msg = "no schedules support in this backend"
        if wants_json(request):
            return JSONResponse({"supported": False, "error": msg, "schedules": []})
        return board.render(request, who, "schedules.html", {}, supported=False, items=[], message=msg)
    items = await board.admin.schedules()
    data = {"supported": True, "schedules": [s.to_json() for s in items]}
    return board.render(request, who, "schedules.html", data, supported=True, items=items, message="")


async def audit(board: Dashboard, request: Request, who: Identity) -> Response:
    """The in-memory audit log of actions, newest first."""
    entries = board.audit.entries()
    return board.render(request, who, "audit.html", {"entries": [e.to_json() for e in entries]}, entries=entries)


PAGES = (
    ("/", overview, "overview"),
    ("/queues", queues, "queues"),
    ("/tasks", tasks, "tasks"),
    ("/tasks/{task_id}", task, "task"),
    ("/dlq", dlq, "dlq"),
    ("/workers", workers, "workers"),
    ("/schedules", schedules, "schedules"),
    ("/audit", audit, "audit"),
)
