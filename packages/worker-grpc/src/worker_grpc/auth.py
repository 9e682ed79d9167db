"""The auth hook (go-worker's ``WithGRPCAuth``) and a bearer-token implementation.

The hook is called at the start of every WorkerService RPC (once per stream) as
``hook(context, method, request)``: ``context`` is the ``grpc.aio.ServicerContext``, ``method`` the full
method name (``"/worker.v1.WorkerService/GetTask"``), ``request`` the request message. It may be a
plain or an ``async`` function. To refuse the call it:

- raises :class:`~worker_grpc.errors.StatusError` (``StatusError(grpc.StatusCode.UNAUTHENTICATED, "...")``),
- or awaits ``context.abort(code, details)``,
- or sets ``context.set_code(code)`` (and details) and then raises or returns;

the caller then gets exactly that status. Returning ``False`` or raising anything else answers
``PERMISSION_DENIED`` ("unauthorized"); the exception is logged, its text is never sent.

To accept the call the hook returns the caller's identity: a :class:`Principal`, or a ``str`` (its name).
The servicer owns every task a principal registers by that name (see :mod:`worker_grpc.access`).
Returning ``None`` or ``True`` accepts the call as the :data:`ANONYMOUS` principal (the behaviour of a hook
written before identities existed: every caller it accepts is the same one).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias, final

import grpc

from .errors import StatusError

__all__ = ("ANONYMOUS", "AuthHook", "BearerTokenAuth", "Principal", "check_auth")

logger = logging.getLogger(__name__)

#: ``hook(context, method, request)``; plain or ``async``; raise or abort to refuse; return the caller's
#: :class:`Principal` (or its name) to accept.
AuthHook: TypeAlias = Callable[["grpc.aio.ServicerContext[Any, Any]", str, Any], "Awaitable[object] | object"]

_UNAUTHORIZED = "unauthorized"


@final
@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a call, as the auth hook established it.

    ``name`` identifies the owner of the tasks the principal registers (``""`` is the anonymous
    principal); ``roles`` are free-form labels an authorizer may grant more on (see
    :func:`worker_grpc.grant_all`). Names are stored in the metadata of the tasks registered over gRPC:
    use a stable identifier, never a secret.
    """

    name: str
    roles: frozenset[str] = field(default=frozenset())

    @property
    def anonymous(self) -> bool:
        """True for the principal of a server without an auth hook (or a hook that names nobody)."""
        return not self.name


#: The caller of a server without auth hook, or of a hook that returns ``None``/``True``.
ANONYMOUS = Principal("")


def principal_of(outcome: object) -> Principal | None:
    """The principal an auth hook's return value names; ``None`` when the value refuses the call."""
    if outcome is None or outcome is True:
        return ANONYMOUS
    if isinstance(outcome, Principal):
        return outcome
    if isinstance(outcome, str):
        return Principal(outcome)
    return None


def _status_set(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    try:
        code: object = context.code()
    except (AttributeError, NotImplementedError):  # pragma: no cover - every grpc.aio context has code()
        return None
    # grpc.aio returns an int 0 or None before set_code(); only a real non-OK code counts.
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return code
    return None


async def check_auth(
    hook: AuthHook, context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any
) -> Principal:
    """Run ``hook``; the principal it accepted, or abort the RPC with the status it chose (or ``PERMISSION_DENIED``).

    A value that is neither a :class:`Principal`, a ``str``, ``None`` nor ``True`` refuses the call
    (``PERMISSION_DENIED``; a ``False`` is the usual one).
    """
    try:
        outcome = hook(context, method, request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
    except grpc.aio.AbortError:
        raise  # the hook called context.abort(): its status stands
    except StatusError as exc:
        await context.abort(exc.code, exc.details)
    except Exception as exc:
        code = _status_set(context)
        if code is not None:
            await context.abort(code, context.details() or _UNAUTHORIZED)
        logger.warning("auth hook refused %s with %s", method, type(exc).__name__)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, _UNAUTHORIZED)
    code = _status_set(context)
    if code is not None:
        await context.abort(code, context.details() or _UNAUTHORIZED)
    principal = principal_of(outcome)
    if principal is None:
        if outcome is not False:
            logger.warning("auth hook returned %s for %s: not an identity", type(outcome).__name__, method)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, _UNAUTHORIZED)
    return principal


def token_principal(token: str) -> Principal:
    """The principal of a token given without a name: ``token:`` and 12 hex digits of its SHA-256.

    Stable across restarts and distinct per token, and it does not reveal the token.
    """
    return Principal("token:" + hashlib.sha256(token.encode()).hexdigest()[:12])


@final
class BearerTokenAuth:
    """Accepts a call whose ``authorization`` metadata is ``Bearer <token>`` for a known token: its principal.

    ``tokens`` is an iterable of tokens (each one its own principal, named by :func:`token_principal`) or a
    mapping of token to principal (a :class:`Principal` or a name; several tokens may share one). A missing
    or unknown token answers ``UNAUTHENTICATED``. Tokens are compared in constant time and never logged.
    Use it as ``serve(..., auth=BearerTokenAuth({"s3cret": "billing"}))``.
    """

    def __init__(self, tokens: Iterable[str] | Mapping[str, Principal | str], *, header: str = "authorization") -> None:
        pairs: list[tuple[bytes, Principal]] = []
        if isinstance(tokens, Mapping):
            for token, who in tokens.items():
                if token:
                    pairs.append((token.encode(), who if isinstance(who, Principal) else Principal(who)))
        else:
            pairs = [(t.encode(), token_principal(t)) for t in tokens if t]
        if not pairs:
            raise ValueError("BearerTokenAuth needs at least one non-empty token")
        self._tokens = tuple(pairs)
        self._header = header.lower()

    def __call__(self, context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any) -> Principal:
        """Check the call's bearer token; its principal, or :class:`StatusError` ``UNAUTHENTICATED``."""
        presented = None
        for key, value in context.invocation_metadata() or ():
            if key == self._header and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token:
                    presented = token.strip().encode()
                break
        if presented is None:
            raise StatusError(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        found: Principal | None = None
        for known, principal in self._tokens:  # every token compared: the time does not say which matched
            if hmac.compare_digest(presented, known):
                found = principal
        if found is None:
            raise StatusError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
        return found
