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
"""

from __future__ import annotations

import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias, final

import grpc

from .errors import StatusError

__all__ = ("AuthHook", "BearerTokenAuth", "check_auth")

logger = logging.getLogger(__name__)

#: ``hook(context, method, request)``; plain or ``async``; raise or abort to refuse.
AuthHook: TypeAlias = Callable[["grpc.aio.ServicerContext[Any, Any]", str, Any], "Awaitable[object] | object"]

_UNAUTHORIZED = "unauthorized"


def _status_set(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    try:
        code: object = context.code()
    except (AttributeError, NotImplementedError):  # pragma: no cover - every grpc.aio context has code()
        return None
    # grpc.aio returns an int 0 or None before set_code(); only a real non-OK code counts.
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return code
    return None


async def check_auth(hook: AuthHook, context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any) -> None:
    """Run ``hook``; abort the RPC with the status it chose, or ``PERMISSION_DENIED``."""
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
    if outcome is False:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, _UNAUTHORIZED)


@final
class BearerTokenAuth:
    """Accepts a call whose ``authorization`` metadata is ``Bearer <token>`` for one of ``tokens``.

    A missing or unknown token answers ``UNAUTHENTICATED``. Tokens are compared in constant time and
    never logged. Use it as ``serve(..., auth=BearerTokenAuth({"s3cret"}))``.
    """

    def __init__(self, tokens: Iterable[str], *, header: str = "authorization") -> None:
        self._tokens = tuple(t.encode() for t in tokens if t)
        if not self._tokens:
            raise ValueError("BearerTokenAuth needs at least one non-empty token")
        self._header = header.lower()

    def __call__(self, context: grpc.aio.ServicerContext[Any, Any], method: str, request: Any) -> None:
        """Check the call's bearer token; raise :class:`StatusError` ``UNAUTHENTICATED`` when it is wrong."""
        presented = None
        for key, value in context.invocation_metadata() or ():
            if key == self._header and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token:
                    presented = token.strip().encode()
                break
        if presented is None:
            raise StatusError(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(presented, known)
        if not matched:
            raise StatusError(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
