"""The actions (POST, also under ``/api``): pause and resume, DLQ replay and purge, schedules. Each is audited.

Bulk actions over a filter (replay matching, purge) are two steps: without ``expected`` they only count and
ask for confirmation (a page stating the count, or 409 with ``{"confirm": n}``); with ``expected`` equal to the
count found now they run, otherwise they ask again with the new count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from worker_core.admin import ScheduleAdmin
from worker_core.errors import ConfigurationError, TaskNotFoundError

from ._app import safe_next, wants_json
from ._security import Identity

if TYPE_CHECKING:
    from ._app import Dashboard

__all__ = ("ACTIONS", "MAX_BULK")

#: Tasks one bulk DLQ action (replay or purge over a filter) handles at most.
MAX_BULK = 10_000
_REPLAY_CHUNK = 1000


def _form(request: Request) -> dict[str, str]:
    form: dict[str, str] = request.state.form
    return form


async def pause_all(board: Dashboard, request: Request, who: Identity) -> Response:
    """Stop every node from leasing."""
    await board.admin.pause()
    board.audit.record(str(who.principal), "pause", "all queues", 1, ok=True)
    return board.back(request, "/queues", "paused every queue", {"paused": True})


async def resume_all(board: Dashboard, request: Request, who: Identity) -> Response:
    """Undo the global pause."""
    await board.admin.resume()
    board.audit.record(str(who.principal), "resume", "all queues", 1, ok=True)
    return board.back(request, "/queues", "resumed every queue", {"paused": False})


async def pause_queue(board: Dashboard, request: Request, who: Identity) -> Response:
    """Stop leasing from one queue."""
    name = request.path_params["name"]
    await board.admin.pause_queue(name)
    board.audit.record(str(who.principal), "pause", f"queue {name}", 1, ok=True)
    return board.back(request, _next(request, "/queues"), f"paused queue {name}", {"queue": name, "paused": True})


async def resume_queue(board: Dashboard, request: Request, who: Identity) -> Response:
    """Restart leasing from one queue."""
    name = request.path_params["name"]
    await board.admin.resume_queue(name)
    board.audit.record(str(who.principal), "resume", f"queue {name}", 1, ok=True)
    return board.back(request, _next(request, "/queues"), f"resumed queue {name}", {"queue": name, "paused": False})


async def replay_one(board: Dashboard, request: Request, who: Identity) -> Response:
    """Make one dead task ready again (attempts reset when ``reset_attempts`` is set)."""
    task_id = request.path_params["task_id"]
    reset = _form(request).get("reset_attempts", "") in ("1", "true", "on")
    try:
        await board.admin.dlq_entry(task_id)  # only a dead task is replayed (a requeue moves any task)
    except TaskNotFoundError:
        board.audit.record(str(who.principal), "replay", f"task {task_id}", 0, ok=False, detail="not in the DLQ")
        raise
    result = await board.admin.replay_dlq_ids([task_id], reset_attempts=reset)
    ok = result.count == 1
    board.audit.record(str(who.principal), "replay", f"task {task_id}", result.count, ok=ok)
    if not ok:
        return board.error(request, who, 404, f"task {task_id} is not in the DLQ")
    return board.back(request, _next(request, "/dlq"), f"replayed task {task_id}", {"count": result.count})


async def _matching(board: Dashboard, form: dict[str, str]) -> tuple[list[str], bool]:
    """Ids of the dead tasks matching the form's filters (at most MAX_BULK), and whether more matched."""
    queue, handler, query = form.get("queue", ""), form.get("handler", ""), form.get("q", "")
    ids: list[str] = []
    offset = 0
    while len(ids) < MAX_BULK:
        page = await board.admin.dlq(limit=1000, offset=offset, queue=queue, handler=handler, query=query)
        ids.extend(e.id for e in page.entries)
        if len(page.entries) < 1000 or page.truncated:
            return ids[:MAX_BULK], page.truncated
        offset += 1000
    return ids[:MAX_BULK], True


async def _confirmed(
    board: Dashboard, request: Request, who: Identity, verb: str, path: str
) -> tuple[list[str], Response | None]:
    """The matching ids when ``expected`` confirms their count; else the confirmation to show."""
    form = _form(request)
    ids, more = await _matching(board, form)
    expected = form.get("expected", "")
    if expected.isdigit() and int(expected) == len(ids):
        return ids, None
    filters = {k: form.get(k, "") for k in ("queue", "handler", "q")}
    stale = bool(expected) and expected != str(len(ids))
    if wants_json(request):
        body = {"confirm": len(ids), "more": more, "filters": filters, "changed": stale}
        return ids, JSONResponse(body, status_code=409)
    response = board.render(
        request, who, "confirm.html", {}, verb=verb, path=path, count=len(ids), more=more, filters=filters, stale=stale
    )
    return ids, response


async def replay_matching(board: Dashboard, request: Request, who: Identity) -> Response:
    """Replay every dead task matching the filters, after a confirmation that states the count."""
    ids, confirm = await _confirmed(board, request, who, "replay", "/dlq/replay")
    if confirm is not None:
        return confirm
    reset = _form(request).get("reset_attempts", "") in ("1", "true", "on")
    moved = 0
    for i in range(0, len(ids), _REPLAY_CHUNK):
        moved += (await board.admin.replay_dlq_ids(ids[i : i + _REPLAY_CHUNK], reset_attempts=reset)).count
    board.audit.record(str(who.principal), "replay", _describe(_form(request)), moved, ok=True)
    return board.back(request, "/dlq", f"replayed {moved} tasks", {"count": moved})


async def purge_matching(board: Dashboard, request: Request, who: Identity) -> Response:
    """Delete every dead task matching the filters (and its record), after a confirmation stating the count."""
    ids, confirm = await _confirmed(board, request, who, "purge", "/dlq/purge")
    if confirm is not None:
        return confirm
    deleted = (await board.admin.delete(ids, delete_hash=True)).count if ids else 0
    board.audit.record(str(who.principal), "purge", _describe(_form(request)), deleted, ok=True)
    return board.back(request, "/dlq", f"purged {deleted} tasks", {"count": deleted})


def _schedules(board: Dashboard) -> ScheduleAdmin:
    if not isinstance(board.admin, ScheduleAdmin):
        raise ConfigurationError("no schedules support in this backend")
    return board.admin


async def schedule_pause(board: Dashboard, request: Request, who: Identity) -> Response:
    """Stop a schedule from firing."""
    name = request.path_params["name"]
    await _schedules(board).pause_schedule(name)
    board.audit.record(str(who.principal), "pause", f"schedule {name}", 1, ok=True)
    return board.back(request, "/schedules", f"paused schedule {name}", {"schedule": name, "paused": True})


async def schedule_resume(board: Dashboard, request: Request, who: Identity) -> Response:
    """Let a paused schedule fire again."""
    name = request.path_params["name"]
    await _schedules(board).resume_schedule(name)
    board.audit.record(str(who.principal), "resume", f"schedule {name}", 1, ok=True)
    return board.back(request, "/schedules", f"resumed schedule {name}", {"schedule": name, "paused": False})


async def schedule_run(board: Dashboard, request: Request, who: Identity) -> Response:
    """Enqueue one run of a schedule now."""
    name = request.path_params["name"]
    task_id = await _schedules(board).run_schedule_now(name)
    # "": a durable schedule's run is a request; the node that takes it enqueues the task (its events show it).
    detail = f"task {task_id}" if task_id else "run requested"
    board.audit.record(str(who.principal), "run", f"schedule {name}", 1, ok=True, detail=detail)
    message = f"ran schedule {name}: task {task_id}" if task_id else f"requested a run of schedule {name}"
    return board.back(request, "/schedules", message, {"task_id": task_id})


def _describe(form: dict[str, str]) -> str:
    parts = [f"{k}={form[k]}" for k in ("queue", "handler", "q") if form.get(k)]
    return "dlq " + (" ".join(parts) if parts else "(all)")


def _next(request: Request, default: str) -> str:
    """Where to go after the action: the form's ``next`` when it is a path of this dashboard."""
    return safe_next(_form(request).get("next", ""), default)


ACTIONS = (
    ("/pause", pause_all),
    ("/resume", resume_all),
    ("/queues/{name}/pause", pause_queue),
    ("/queues/{name}/resume", resume_queue),
    ("/dlq/replay", replay_matching),
    ("/dlq/purge", purge_matching),
    ("/dlq/{task_id}/replay", replay_one),
    ("/schedules/{name}/pause", schedule_pause),
    ("/schedules/{name}/resume", schedule_resume),
    ("/schedules/{name}/run", schedule_run),
)
