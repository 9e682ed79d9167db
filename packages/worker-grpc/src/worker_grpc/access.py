"""Who may see which task: tasks registered over gRPC belong to the principal that registered them.

The servicer writes the registering principal's name into each task's metadata under :data:`OWNER_KEY`
(in-memory and durable tasks alike, so the owner travels with a durable task to whichever node runs
it). A key of that name sent by a client is dropped first: a caller cannot register a task for someone
else. A task without the key (registered in Python, or over gRPC by the anonymous principal) belongs to
the anonymous principal.

``GetTask``, ``CancelTask`` and ``StreamResults`` show a principal its own tasks only. An *authorizer*
grants more: ``authorize(principal, method, owner)`` is called when the principal is not the owner, with
the full method name and the owner's name (``"*"`` when a ``StreamResults`` call without ids asks for
every principal's results); ``True`` grants. A task another principal owns looks exactly like an unknown
one (``NOT_FOUND``; a stream simply never sees it).

Without an auth hook every caller is the anonymous principal, so every caller sees every task (the
behaviour before identities existed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, final

from worker_core import Task

from .auth import Principal

__all__ = ("EVERY_OWNER", "OWNER_KEY", "Access", "Authorizer", "grant_all")

logger = logging.getLogger(__name__)

#: The task metadata key holding the name of the principal that registered the task over gRPC.
OWNER_KEY = "worker-principal"

#: The owner an authorizer is asked about for a ``StreamResults`` call that lists no ids.
EVERY_OWNER = "*"

#: ``authorize(principal, method, owner) -> bool``: may ``principal`` call ``method`` on ``owner``'s tasks?
Authorizer: TypeAlias = Callable[[Principal, str, str], bool]


def grant_all(*, names: Iterable[str] = (), roles: Iterable[str] = ()) -> Authorizer:
    """An authorizer that grants every method on every task to the principals named or holding a role.

    For example ``serve(..., auth=BearerTokenAuth({token: Principal("ops", frozenset({"admin"}))}),
    authorize=grant_all(roles={"admin"}))``.
    """
    allowed_names = frozenset(names)
    allowed_roles = frozenset(roles)

    def authorize(principal: Principal, method: str, owner: str) -> bool:
        return principal.name in allowed_names or not allowed_roles.isdisjoint(principal.roles)

    return authorize


def owner_of(task: Task[Any]) -> str:
    """The name of the principal a task belongs to (``""``: the anonymous principal)."""
    metadata = task.metadata
    if not metadata:
        return ""
    return metadata.get(OWNER_KEY, "")


@final
class Access:
    """The servicer's ownership rule: a principal's own tasks, plus what the authorizer grants."""

    __slots__ = ("_authorize",)

    def __init__(self, authorize: Authorizer | None) -> None:
        self._authorize = authorize

    def allows(self, principal: Principal, method: str, owner: str) -> bool:
        """May ``principal`` call ``method`` on a task of ``owner``?"""
        if owner == principal.name:
            return True
        authorize = self._authorize
        if authorize is None:
            return False
        try:
            return authorize(principal, method, owner) is True
        except Exception:
            logger.exception("authorizer failed for %s on %s: access refused", principal.name or "anonymous", method)
            return False

    def sees(self, principal: Principal, method: str, task: Task[Any]) -> bool:
        """May ``principal`` call ``method`` on ``task``?"""
        return self.allows(principal, method, owner_of(task))


def stamped(metadata: dict[str, str] | None, principal: Principal) -> dict[str, str] | None:
    """``metadata`` without a client-sent :data:`OWNER_KEY`, with the principal's name when it has one."""
    if metadata and OWNER_KEY in metadata:
        metadata = {k: v for k, v in metadata.items() if k != OWNER_KEY}
    if principal.anonymous:
        return metadata or None
    merged = dict(metadata) if metadata else {}
    merged[OWNER_KEY] = principal.name
    return merged
