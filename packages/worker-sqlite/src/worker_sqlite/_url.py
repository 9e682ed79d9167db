"""``sqlite:///relative.db`` and ``sqlite:////absolute.db`` URLs and their query options."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from worker_core.durable.types import dead_ttl_from_text
from worker_core.errors import ConfigurationError

__all__ = ("SqliteUrl", "check_synchronous", "parse_url", "plain_int", "resolve_path", "seconds")

_SYNCHRONOUS = ("off", "normal", "full", "extra")
_FLOAT_OPTIONS = ("busy_timeout", "wake_interval")
_INT_OPTIONS = ("extra_deliveries", "recent_outcomes")
_TEXT_OPTIONS = ("default_queue", "synchronous")
_TTL_OPTIONS = ("dead_ttl",)


@dataclass(frozen=True, slots=True)
class SqliteUrl:
    """A parsed URL: the absolute file path and the backend options its query sets."""

    path: str
    options: dict[str, Any] = field(default_factory=dict)


def resolve_path(path: str) -> str:
    """``path`` made absolute (relative to the current directory).

    Raises:
        ConfigurationError: an empty path or an in-memory database (not shared between connections).
    """
    if not isinstance(path, str | os.PathLike):
        raise ConfigurationError(f"sqlite path must be a string or a path, got {path!r}")
    text = os.fspath(path)
    if not text.strip():
        raise ConfigurationError("sqlite path must not be empty")
    if text == ":memory:" or text.startswith("file::memory:") or "mode=memory" in text:
        raise ConfigurationError(
            "an in-memory SQLite database is private to one connection and this backend uses several "
            "(a writer and a reader); use a file, e.g. sqlite:///tasks.db, or memory:// for a process-local backend"
        )
    return os.path.abspath(text)


def parse_url(url: str) -> SqliteUrl:
    """Parse ``sqlite:///path.db?option=value``: three slashes and a relative path, four for an absolute one.

    Options: ``busy_timeout`` and ``wake_interval`` (seconds), ``synchronous`` (``off``, ``normal``, ``full``,
    ``extra``), ``default_queue``, ``extra_deliveries``, ``recent_outcomes``, ``dead_ttl`` (seconds; ``0``: forever).

    Raises:
        ConfigurationError: another scheme, a host, no path, ``:memory:``, an unknown or malformed option.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"sqlite URL must be a string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite:// URL: {url!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"sqlite URLs take no host ({parts.netloc!r}): sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigurationError(f"sqlite URL names no file: {url!r} (e.g. sqlite:///tasks.db)")
    query = parse_qs(parts.query, keep_blank_values=True)
    known = (*_FLOAT_OPTIONS, *_INT_OPTIONS, *_TEXT_OPTIONS, *_TTL_OPTIONS)
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise ConfigurationError(f"unknown sqlite:// option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    options: dict[str, Any] = {}
    for name, values in query.items():
        raw = values[-1].strip()
        if name in _FLOAT_OPTIONS:
            try:
                number = float(raw)
            except ValueError:
                number = math.nan
            if not (number > 0 and math.isfinite(number)):
                raise ConfigurationError(f"sqlite:// {name} must be a positive number of seconds, got {raw!r}")
            options[name] = number
        elif name in _TTL_OPTIONS:
            options[name] = dead_ttl_from_text(raw)
        elif name in _INT_OPTIONS:
            try:
                options[name] = int(raw)
            except ValueError:
                raise ConfigurationError(f"sqlite:// {name} must be an integer, got {raw!r}") from None
        else:
            options[name] = raw
    return SqliteUrl(resolve_path(path), options)


def check_synchronous(value: object) -> str:
    """``value`` as a ``PRAGMA synchronous`` level.

    Raises:
        ConfigurationError: not one of off, normal, full, extra.
    """
    if not isinstance(value, str) or value.lower() not in _SYNCHRONOUS:
        raise ConfigurationError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {value!r}")
    return value.lower()


def plain_int(value: object, minimum: int) -> bool:
    """Whether ``value`` is an int (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def seconds(value: object, name: str) -> float:
    """``value`` as a positive, finite number of seconds.

    Raises:
        ConfigurationError: anything else (a bool, 0, a negative number, NaN, infinity, text).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
