"""Registering several tasks in one call: every one is tried, and the rejections are raised together."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from .errors import PartialRegistrationError

__all__ = ("register_each", "rejected")

T = TypeVar("T")


async def register_each(
    register: Callable[[T], Awaitable[uuid.UUID]], tasks: Sequence[T], noun: str
) -> list[uuid.UUID]:
    """Register every task with ``register``; the ids of those accepted, or the rejections raised together.

    Raises:
        PartialRegistrationError: one or more tasks were rejected (the others are registered all the same;
            its ``accepted`` holds their ids).
    """
    ids: list[uuid.UUID] = []
    errors: list[Exception] = []
    for task in tasks:
        try:
            ids.append(await register(task))
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise rejected(errors, len(tasks), noun, ids)
    return ids


def rejected(
    errors: Sequence[Exception], total: int, noun: str, accepted: Sequence[uuid.UUID] = ()
) -> PartialRegistrationError:
    """The group ``register_*_tasks`` raises: every rejection in the order given, and the accepted ids."""
    return PartialRegistrationError(f"{len(errors)} of {total} {noun} were not registered", errors, accepted)
