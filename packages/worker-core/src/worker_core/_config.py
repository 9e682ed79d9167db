"""Validation helpers for constructor and setter arguments (they raise ConfigurationError)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .errors import ConfigurationError
from .task import to_seconds

__all__ = ("config_int", "config_seconds", "is_plain_int", "is_str", "utc_timestamp")


def config_seconds(value: float | timedelta | None, name: str, *, allow_zero: bool = False) -> float | None:
    try:
        return to_seconds(value, name, allow_zero=allow_zero)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


def config_int(value: object, name: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def is_str(value: object) -> bool:
    return isinstance(value, str)


def is_plain_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def utc_timestamp(when: datetime) -> float:
    """Epoch seconds of ``when``; a naive datetime is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
