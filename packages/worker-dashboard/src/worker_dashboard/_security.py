"""Who is asking and may they act: token login with cookie sessions, a host app's principal, CSRF, the audit log.

* Reads: open to anyone only when no authentication is configured (then the dashboard is read-only).
* Actions (every POST): need a principal, a writable dashboard and, for cookie-authenticated requests, a CSRF
  token (signed double-submit: the ``wd_csrf`` cookie, issued by the server, equal to the ``_csrf`` form field
  or the ``X-CSRF-Token`` header). A script's ``Authorization: Bearer <token>`` carries no ambient credential
  and needs no CSRF token.
* Every action is written to a bounded in-memory audit log and to the ``worker_dashboard.audit`` logger.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ("AUDIT_SIZE", "AuditEntry", "AuditLog", "Principal", "Security")

audit_logger = logging.getLogger("worker_dashboard.audit")
logger = logging.getLogger(__name__)

#: Audit entries kept in memory by default (the oldest are dropped; the logger keeps everything).
AUDIT_SIZE: Final = 1000
SESSION_COOKIE: Final = "wd_session"
CSRF_COOKIE: Final = "wd_csrf"
_MAX_SESSIONS = 1000
_SESSION_TTL_S = 12 * 3600.0

#: ``principal=``: the host application's user for an ASGI scope (``None``: not signed in); may be async.
Principal = Callable[[dict[str, Any]], "str | Awaitable[str | None] | None"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action: who, what, on what, how many tasks or queues it changed, when, and whether it worked."""

    at: float
    principal: str
    action: str
    target: str
    count: int
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object."""
        return {
            "at": self.at,
            "principal": self.principal,
            "action": self.action,
            "target": self.target,
            "count": self.count,
            "ok": self.ok,
            "detail": self.detail,
        }


class AuditLog:
    """The last ``size`` actions in memory (newest last), each also logged at INFO (WARNING when it failed)."""

    def __init__(self, size: int = AUDIT_SIZE) -> None:
        self._entries: deque[AuditEntry] = deque(maxlen=max(1, size))

    def record(self, principal: str, action: str, target: str, count: int, *, ok: bool, detail: str = "") -> None:
        """Keep and log one action."""
        entry = AuditEntry(time.time(), principal, action, target, count, ok, detail)
        self._entries.append(entry)
        audit_logger.log(
            logging.INFO if ok else logging.WARNING,
            "dashboard action %s on %s by %s: count=%d ok=%s %s",
            action,
            target,
            principal,
            count,
            ok,
            detail,
        )

    def entries(self) -> list[AuditEntry]:
        """The kept entries, newest first."""
        return list(reversed(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one request: ``principal`` (``None``: anonymous) and how it was authenticated."""

    principal: str | None
    via: str  # "anonymous" | "session" | "bearer" | "host"


class Security:
    """Authentication, sessions and CSRF for one dashboard (it owns the session table, bounded)."""

    def __init__(self, *, token: str | None, principal: Principal | None, read_only: bool, secret: bytes) -> None:
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        self.token = token
        self.principal_fn = principal
        self.read_only = read_only
        self._secret = secret
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def auth_configured(self) -> bool:
        """Whether a token or the host's principal authenticates callers (otherwise: anonymous read-only)."""
        return self.token is not None or self.principal_fn is not None

    # -- identity ----------------------------------------------------------------------------------
    async def identify(self, scope: dict[str, Any], headers: dict[str, str], cookies: dict[str, str]) -> Identity:
        """Who sent this request (bearer token, session cookie, the host's principal, or nobody)."""
        auth = headers.get("authorization", "")
        if self.token is not None and auth.lower().startswith("bearer "):
            if self.check_token(auth[7:].strip()):
                return Identity("token", "bearer")
            return Identity(None, "anonymous")
        session = cookies.get(SESSION_COOKIE)
        if self.token is not None and session:
            who = self._session(session)
            if who is not None:
                return Identity(who, "session")
        if self.principal_fn is not None:
            try:
                got = self.principal_fn(scope)
                if inspect.isawaitable(got):
                    got = await got
            except Exception:  # the host's code failed: nobody is signed in (denied, never let through)
                logger.exception("the dashboard's principal callable raised; treating the request as anonymous")
                got = None
            if got:
                return Identity(str(got), "host")
        return Identity(None, "anonymous")

    def can_read(self, who: Identity) -> bool:
        """Anyone when no authentication is configured; otherwise a principal."""
        return who.principal is not None or not self.auth_configured

    def can_act(self, who: Identity) -> bool:
        """A principal on a dashboard that is not read-only."""
        return who.principal is not None and not self.read_only

    def check_token(self, given: str) -> bool:
        """Constant-time comparison with the configured token."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    # -- sessions ----------------------------------------------------------------------------------
    def new_session(self, principal: str = "token") -> str:
        """A fresh session id for ``principal`` (the oldest session is dropped beyond the bound)."""
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (principal, time.monotonic() + _SESSION_TTL_S)
        while len(self._sessions) > _MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sid

    def end_session(self, sid: str) -> None:
        """Forget a session (logout)."""
        self._sessions.pop(sid, None)

    def _session(self, sid: str) -> str | None:
        entry = self._sessions.get(sid)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._sessions[sid]
            return None
        return entry[0]

    # -- CSRF --------------------------------------------------------------------------------------
    def new_csrf(self) -> str:
        """A CSRF cookie value: a nonce and its HMAC under the dashboard's secret."""
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def csrf_valid(self, cookie: str | None, submitted: str | None) -> bool:
        """The cookie was issued by this dashboard and the form field or header repeats it."""
        if not cookie or not submitted:
            return False
        nonce, _, mac = cookie.partition(".")
        if not nonce or not hmac.compare_digest(mac.encode(), self._sign(nonce).encode()):
            return False
        return hmac.compare_digest(cookie.encode(), submitted.encode())

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]
