"""Server-sent events (the live parts of the pages), login and logout, and ``/healthz``.

One ``/events`` stream per open page: on connect it sends the current fragments, then each fragment again
whenever the shared sampler's snapshot changes it, and a comment every 15 s to keep proxies from closing an
idle stream. The page's script closes the stream while the tab is hidden and reopens it when shown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from worker_core.errors import WorkerError

from ._security import CSRF_COOKIE, SESSION_COOKIE, Identity
from ._views import overview_context

if TYPE_CHECKING:
    from ._app import Dashboard

__all__ = ("TOPICS", "routes")

#: What ``/events?topics=...`` can stream: the overview's queue table, the workers table, the DLQ size.
TOPICS = ("overview", "workers", "dead")
_KEEPALIVE_S = 15.0


def _event(name: str, html: str) -> str:
    lines = "\n".join(f"data: {line}" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n\n"


def _render(board: Dashboard, topic: str, who: Identity, csrf: str, base: str) -> str:
    snap = board.sampler.snapshot
    common = {"base": base, "csrf": csrf, "can_act": board.security.can_act(who)}
    if topic == "overview":
        if snap.overview is None:
            return board.fragment("_unavailable.html", error=snap.error or "no data yet")
        ctx = overview_context(board, snap.overview, snap.samples, len(snap.nodes), snap.error)
        return board.fragment("_overview_live.html", **common, **ctx)
    if topic == "workers":
        return board.fragment("_workers_live.html", **common, nodes=snap.nodes, now=int(snap.at * 1000))
    return str(snap.overview.dead) if snap.overview is not None else "?"


async def events(request: Request) -> Response:
    """``text/event-stream`` of the requested topics' fragments, sent when they change."""
    board: Dashboard = request.app.state.dashboard
    board.sampler.touch()
    who = await board.identify(request)
    if not board.security.can_read(who):
        return JSONResponse({"error": "authentication required"}, status_code=401)
    topics = [t for t in request.query_params.get("topics", "").split(",") if t in TOPICS] or ["dead"]
    csrf = request.cookies.get(CSRF_COOKIE, "")
    base = request.scope.get("root_path", "")

    async def stream() -> AsyncIterator[str]:
        board.sampler.viewers += 1
        try:
            sent: dict[str, str] = {}
            snap = await board.sampler.fresh()
            yield "retry: 2000\n\n"
            while True:
                for topic in topics:
                    html = _render(board, topic, who, csrf, base)
                    if sent.get(topic) != html:
                        sent[topic] = html
                        yield _event(topic, html)
                board.sampler.touch()
                newer = await board.sampler.wait_newer(snap.version, _KEEPALIVE_S)
                if newer.version == snap.version:
                    yield ": keepalive\n\n"
                snap = newer
        finally:
            board.sampler.viewers -= 1

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def login_page(request: Request) -> Response:
    """The token form (only when a token is configured)."""
    from ._app import safe_next

    board: Dashboard = request.app.state.dashboard
    who = await board.identify(request)
    if board.security.token is None:
        return board.error(request, who, 404, "this dashboard has no token login")
    nxt = safe_next(request.query_params.get("next", "/"))
    return board.render(request, who, "login.html", {}, next=nxt, failed=False)


async def login(request: Request) -> Response:
    """Check the token (constant time) and open a cookie session; CSRF-protected like every POST."""
    from ._app import read_form, safe_next, set_cookie

    board: Dashboard = request.app.state.dashboard
    who = await board.identify(request)
    if board.security.token is None:
        return board.error(request, who, 404, "this dashboard has no token login")
    form = await read_form(request)
    if not board.security.csrf_valid(request.cookies.get(CSRF_COOKIE), form.get("_csrf")):
        return board.error(request, who, 403, "missing or invalid CSRF token: reload the page and retry")
    nxt = safe_next(form.get("next", "/"))
    if not board.security.check_token(form.get("token", "")):
        board.audit.record("anonymous", "login", "dashboard", 0, ok=False, detail="wrong token")
        response = board.render(request, who, "login.html", {}, next=nxt, failed=True)
        response.status_code = 401
        return response
    sid = board.security.new_session("token")
    board.audit.record("token", "login", "dashboard", 1, ok=True)
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}{nxt}", 303)
    set_cookie(request, response, SESSION_COOKIE, sid)
    set_cookie(request, response, CSRF_COOKIE, board.security.new_csrf())  # a fresh CSRF token per session
    return response


async def logout(request: Request) -> Response:
    """End the cookie session (CSRF-protected)."""
    from ._app import read_form

    board: Dashboard = request.app.state.dashboard
    who = await board.identify(request)
    form = await read_form(request)
    if not board.security.csrf_valid(request.cookies.get(CSRF_COOKIE), form.get("_csrf")):
        return board.error(request, who, 403, "missing or invalid CSRF token")
    sid = request.cookies.get(SESSION_COOKIE, "")
    board.security.end_session(sid)
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/login?{urlencode({'msg': 'signed out'})}", 303)
    response.delete_cookie(SESSION_COOKIE, path=root or "/")
    return response


async def healthz(request: Request) -> Response:
    """``{"ok": true, ...}`` when the store answers (503 otherwise); open to probes, reveals no data."""
    board: Dashboard = request.app.state.dashboard
    body: dict[str, Any] = {
        "ok": True,
        "viewers": board.sampler.viewers,
        "uptime_s": round(time.time() - board.started),
    }
    try:
        await board.admin.ping()
    except WorkerError as exc:
        body.update(ok=False, error=type(exc).__name__)
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


def routes(board: Dashboard) -> list[BaseRoute]:
    """The SSE, login, logout and health routes."""
    del board
    return [
        Route("/events", events, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
