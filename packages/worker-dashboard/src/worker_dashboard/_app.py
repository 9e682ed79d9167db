"""The :class:`Dashboard`: one store's admin, its security, the shared sampler, and the Starlette app over them."""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from worker_core.admin import DurableAdmin, open_admin
from worker_core.durable.outcomes import ResultStoreBackend
from worker_core.errors import ConfigurationError, TaskNotFoundError, WorkerError

from ._redact import DEFAULT_REDACT, Redactor
from ._sampler import Sampler
from ._security import AUDIT_SIZE, CSRF_COOKIE, AuditLog, Identity, Principal, Security

__all__ = ("Dashboard", "dashboard_app")

Handler = Callable[["Dashboard", Request, Identity], Awaitable[Response]]
_MAX_FORM = 64 * 1024
#: Sent with every page: no framing (clickjacking), scripts and connections from this origin only, no caching.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATIC = __package__ or "worker_dashboard"


class Dashboard:
    """A dashboard over one durable store, reached only through :class:`~worker_core.admin.DurableAdmin`.

    Args:
        admin: the store's admin (see :func:`worker_core.admin.open_admin`); optional capabilities
            (:class:`~worker_core.admin.TaskBrowser`, :class:`~worker_core.admin.ScheduleAdmin`) are used when
            it has them.
        results: the store's result store (finished tasks, their tracebacks), if it keeps outcomes.
        token: a shared secret: ``/login`` with it opens a cookie session, ``Authorization: Bearer`` for scripts.
        principal: the host application's user for an ASGI scope (``None``: not signed in), for mounting
            behind the host's own authentication. With neither, the dashboard is anonymous and read-only.
        read_only: refuse every action, whoever asks.
        redact: key-name patterns (case-insensitive regular expressions) whose values are never shown.
        refresh: seconds between two reads of the live state (SSE pages, throughput history).
        audit_size: actions kept in the in-memory audit log.
        title: shown in the page header.
        owns_store: close ``admin`` and ``results`` in :meth:`aclose` (set when built from a URL).
    """

    def __init__(
        self,
        admin: DurableAdmin,
        *,
        results: ResultStoreBackend | None = None,
        token: str | None = None,
        principal: Principal | None = None,
        read_only: bool = False,
        redact: Iterable[str] = DEFAULT_REDACT,
        refresh: float = 2.0,
        audit_size: int = AUDIT_SIZE,
        title: str = "worker",
        owns_store: bool = False,
    ) -> None:
        if not isinstance(admin, DurableAdmin):
            raise ConfigurationError(f"admin must implement DurableAdmin, not {type(admin).__name__}")
        if results is not None and not isinstance(results, ResultStoreBackend):
            raise ConfigurationError(f"results must implement ResultStoreBackend, not {type(results).__name__}")
        if not refresh > 0:
            raise ConfigurationError(f"refresh must be > 0 seconds, not {refresh!r}")
        self.admin = admin
        self.results = results
        self.security = Security(token=token, principal=principal, read_only=read_only, secret=secrets.token_bytes(32))
        self.redactor = Redactor(redact)
        self.audit = AuditLog(audit_size)
        self.sampler = Sampler(admin, results, interval=refresh)
        self.title = title
        self.owns_store = owns_store
        self.started = time.time()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader(_STATIC, "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(age=fmt_age, ms=fmt_ms, ts=fmt_ts, num=fmt_num)

    async def aclose(self) -> None:
        """Stop the sampler; close the store's connections when this dashboard opened them."""
        await self.sampler.aclose()
        if self.owns_store:
            await self.admin.aclose()
            close = getattr(self.results, "aclose", None)
            if close is not None:
                await close()

    # -- responses ---------------------------------------------------------------------------------
    def render(self, request: Request, who: Identity, template: str, data: dict[str, Any], **page: Any) -> Response:
        """JSON (``data``) for ``/api/...`` or ``Accept: application/json``, else the page from ``template``."""
        if wants_json(request):
            return JSONResponse(data)
        csrf = request.cookies.get(CSRF_COOKIE) or self.security.new_csrf()
        context = {
            "base": request.scope.get("root_path", ""),
            "title": self.title,
            "who": who,
            "can_act": self.security.can_act(who),
            "can_read": self.security.can_read(who),
            "read_only": self.security.read_only,
            "auth": self.security.auth_configured,
            "csrf": csrf,
            "msg": request.query_params.get("msg", ""),
            "path": request.url.path,
            **page,
        }
        html = self.env.get_template(template).render(context)
        response = HTMLResponse(html, headers=PAGE_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            set_cookie(request, response, CSRF_COOKIE, csrf)
        return response

    def fragment(self, template: str, **context: Any) -> str:
        """A template fragment (what SSE events carry)."""
        return self.env.get_template(template).render(context)

    def back(self, request: Request, path: str, msg: str, data: dict[str, Any], status: int = 200) -> Response:
        """After an action: JSON for scripts, else a redirect (303) to ``path`` showing ``msg``."""
        if wants_json(request):
            return JSONResponse({"message": msg, **data}, status_code=status)
        sep = "&" if "?" in path else "?"
        return RedirectResponse(f"{request.scope.get('root_path', '')}{path}{sep}{urlencode({'msg': msg})}", 303)

    # -- routing -----------------------------------------------------------------------------------
    def read(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A read endpoint: the caller must be allowed to read."""

        async def endpoint(request: Request) -> Response:
            self.sampler.touch()
            who = await self.identify(request)
            if not self.security.can_read(who):
                return self.refuse_anonymous(request)
            try:
                return await handler(self, request, who)
            except TaskNotFoundError as exc:
                return self.error(request, who, 404, str(exc))
            except ConfigurationError as exc:
                return self.error(request, who, 400, str(exc))
            except WorkerError as exc:
                return self.error(request, who, 503, f"{type(exc).__name__}: {exc}")

        return endpoint

    def action(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """An action (POST): a principal, a writable dashboard, and a CSRF token unless sent with a bearer token."""

        async def endpoint(request: Request) -> Response:
            self.sampler.touch()
            who = await self.identify(request)
            if who.principal is None:
                return self.refuse_anonymous(request) if self.security.auth_configured else self.forbidden(request, who)
            if not self.security.can_act(who):
                return self.forbidden(request, who)
            try:
                form = await read_form(request)
                request.state.form = form
                if who.via != "bearer":
                    submitted = form.get("_csrf") or request.headers.get("x-csrf-token")
                    if not self.security.csrf_valid(request.cookies.get(CSRF_COOKIE), submitted):
                        detail = "bad CSRF token"
                        self.audit.record(who.principal, "refused", request.url.path, 0, ok=False, detail=detail)
                        return self.error(request, who, 403, "missing or invalid CSRF token: reload the page and retry")
                return await handler(self, request, who)
            except TaskNotFoundError as exc:
                return self.error(request, who, 404, str(exc))
            except ConfigurationError as exc:
                return self.error(request, who, 400, str(exc))
            except WorkerError as exc:
                return self.error(request, who, 503, f"{type(exc).__name__}: {exc}")
            finally:
                self.sampler.recount()

        return endpoint

    async def identify(self, request: Request) -> Identity:
        """Who sent ``request``."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        return await self.security.identify(dict(request.scope), headers, dict(request.cookies))

    def refuse_anonymous(self, request: Request) -> Response:
        """401 for scripts, the login page (token) or 401 (host auth) for browsers."""
        if wants_json(request) or request.method != "GET" or self.security.token is None:
            return JSONResponse({"error": "authentication required"}, status_code=401)
        nxt = request.url.path
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login?{urlencode({'next': nxt})}", 303)

    def forbidden(self, request: Request, who: Identity) -> Response:
        """403: a read-only dashboard, or an anonymous caller of a dashboard without authentication."""
        why = "this dashboard is read-only" if self.security.read_only else "actions need a signed-in user"
        return self.error(request, who, 403, why)

    def error(self, request: Request, who: Identity, status: int, message: str) -> Response:
        """An error as JSON or as a page."""
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=status)
        response = self.render(request, who, "error.html", {}, status=status, message=message)
        response.status_code = status
        return response

    def routes(self) -> list[BaseRoute]:
        """Every route: pages (also under ``/api``), actions, SSE, login, health and the static assets."""
        from . import _actions, _live, _views

        routes: list[BaseRoute] = []
        for path, handler, name in _views.PAGES:
            routes.append(Route(path, self.read(handler), methods=["GET"], name=name))
            routes.append(Route("/api" + (path if path != "/" else "/overview"), self.read(handler), methods=["GET"]))
        for path, handler in _actions.ACTIONS:
            routes.append(Route(path, self.action(handler), methods=["POST"]))
            routes.append(Route("/api" + path, self.action(handler), methods=["POST"]))
        routes += _live.routes(self)
        routes.append(Mount("/static", StaticFiles(packages=[(_STATIC, "static")]), name="static"))
        return routes


def dashboard_app(
    url: str | None = None,
    *,
    admin: DurableAdmin | None = None,
    results: ResultStoreBackend | None = None,
    token: str | None = None,
    principal: Principal | None = None,
    read_only: bool = False,
    redact: Iterable[str] = DEFAULT_REDACT,
    refresh: float = 2.0,
    audit_size: int = AUDIT_SIZE,
    title: str = "worker",
) -> Starlette:
    """The dashboard as a Starlette (ASGI) app, to run standalone or to mount in yours (``Mount("/tasks", app)``).

    Give the store's ``url`` (its backend plugin provides the admin and, when it keeps outcomes, the result
    store) or an ``admin`` (and ``results``) you opened. The app's :class:`Dashboard` is ``app.state.dashboard``;
    its sampler stops by itself when nobody looks, and ``await app.state.dashboard.aclose()`` (or the app's
    lifespan, when it runs) releases everything.

    Raises:
        ConfigurationError: neither or both of ``url`` and ``admin``; no plugin for the URL's scheme.
    """
    owns = False
    if (url is None) == (admin is None):
        raise ConfigurationError("give the store's url or an admin (one of them)")
    if url is not None:
        admin = open_admin(url)
        results = results if results is not None else _result_store(url)
        owns = True
    assert admin is not None
    board = Dashboard(
        admin,
        results=results,
        token=token,
        principal=principal,
        read_only=read_only,
        redact=redact,
        refresh=refresh,
        audit_size=audit_size,
        title=title,
        owns_store=owns,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await board.aclose()

    app = Starlette(routes=board.routes(), lifespan=lifespan)
    app.state.dashboard = board
    return app


def _result_store(url: str) -> ResultStoreBackend | None:
    """The URL's backend when it is a result store (built by its plugin, connects lazily), else ``None``."""
    from worker_core.plugins import Plugins

    scheme = url.partition(":")[0].lower()
    try:
        backend = Plugins().backends().get(scheme)(url)
    except WorkerError:
        return None
    return backend if isinstance(backend, ResultStoreBackend) else None


# -- helpers -------------------------------------------------------------------------------------
def wants_json(request: Request) -> bool:
    """``/api/...`` paths, and requests whose Accept header prefers JSON to HTML."""
    root = request.scope.get("root_path", "")
    path = request.url.path[len(root) :] if request.url.path.startswith(root) else request.url.path
    if path.startswith("/api/"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded (or JSON object) body, at most 64 KiB; the query string's values fill in missing keys."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise ConfigurationError("request body too large")
    form: dict[str, str] = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/json") and body:
        import json

        try:
            data = json.loads(body)
        except ValueError:
            raise ConfigurationError("body is not JSON") from None
        if not isinstance(data, dict):
            raise ConfigurationError("body must be a JSON object")
        form.update({str(k): str(v) for k, v in data.items()})
    else:
        form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return form


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """A strict, HttpOnly cookie scoped to the dashboard's path (Secure over HTTPS)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=request.scope.get("root_path", "") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def fmt_age(seconds: float) -> str:
    """``3s``, ``4m 12s``, ``2h 5m``, ``3d 1h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def fmt_ms(ms: int) -> str:
    """Epoch ms as ``2026-12-02 04:25:03`` UTC (empty for 0)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def fmt_ts(seconds: float) -> str:
    """Epoch seconds as ``fmt_ms`` does."""
    return fmt_ms(int(seconds * 1000))


def fmt_num(n: int | None) -> str:
    """``1,234,567`` (``?`` for unknown)."""
    return "?" if n is None else f"{n:,}"


def safe_next(path: str, default: str = "/") -> str:
    """``path`` when it is a path of this site (``/x``), else ``default`` (no other host, no backslash)."""
    ok = path.startswith("/") and not path.startswith(("//", "/\\")) and "\\" not in path
    return path if ok else default


def parse_uuid(text: str) -> uuid.UUID | None:
    """``text`` as a UUID, or ``None``."""
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None
