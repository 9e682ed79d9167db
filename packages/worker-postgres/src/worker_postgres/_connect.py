"""The URL (``postgresql://`` / ``postgres://``) with the backend's own options, and psycopg errors translated.

The backend's options may ride in the query, so ``TaskManager(durable_backend="postgresql://...")`` can set
them: ``schema``, ``listen`` (``0`` for polling only: PgBouncer in transaction pooling mode), ``prepare``
(``0``: no server-side prepared statements), ``pool_min``, ``pool_max``, ``poll_interval``, ``default_queue``,
``extra_deliveries``, ``recent_outcomes``, ``dead_ttl`` (seconds a dead task is kept; ``0``: forever) and
``queues`` (``a,b``: lease only from these). Every other query
argument goes to libpq (``sslmode``, ``application_name``, ...). Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout
from worker_core.durable.types import dead_ttl_from_text
from worker_core.errors import BackendError, BackendUnavailableError, ConfigurationError

from ._rows import normalize_queue

__all__ = (
    "UrlOptions",
    "check_options",
    "parse_url",
    "pg_errors",
    "positive_int",
    "positive_seconds",
    "queue_settings",
    "translate",
)

_INTS = frozenset({"pool_min", "pool_max", "extra_deliveries", "recent_outcomes"})
_FLOATS = frozenset({"poll_interval", "command_timeout"})
_BOOLS = frozenset({"listen", "prepare"})
_STRINGS = frozenset({"schema", "default_queue"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class UrlOptions:
    """What :func:`parse_url` found: the conninfo for libpq, how errors name the server, the backend options."""

    conninfo: str
    where: str
    backend: dict[str, Any]


def positive_int(value: object) -> bool:
    """Whether ``value`` is an int (not a bool) above 0."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def positive_seconds(value: object, what: str) -> float:
    """``value`` as a positive, finite number of seconds.

    Raises:
        ConfigurationError: anything else (a bool, 0, a negative number, NaN, infinity, text).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


def check_options(
    extra_deliveries: int, pool_min: int, pool_max: int, recent_outcomes: int, queues: Sequence[str] | None
) -> None:
    """Check the backend's integer and queue-list options.

    Raises:
        ConfigurationError: ``extra_deliveries`` below 0, pool sizes not ``1 <= pool_min <= pool_max``,
            ``recent_outcomes`` below 1, or ``queues`` not a sequence of names (a string is not).
    """
    extra: object = extra_deliveries
    if isinstance(extra, bool) or not (positive_int(extra) or extra == 0):
        raise ConfigurationError(f"extra_deliveries must be an int >= 0, not {extra_deliveries!r}")
    if not positive_int(pool_min) or not positive_int(pool_max) or pool_min > pool_max:
        raise ConfigurationError(f"need 1 <= pool_min <= pool_max, not {pool_min!r}, {pool_max!r}")
    if not positive_int(recent_outcomes):
        raise ConfigurationError(f"recent_outcomes must be a positive int, not {recent_outcomes!r}")
    if queues is not None and (isinstance(queues, str) or not all(isinstance(q, str) for q in queues)):
        raise ConfigurationError(f"queues must be a sequence of queue names, not {queues!r}")


def queue_settings(default_queue: str, weights: Mapping[str, int]) -> tuple[str, dict[str, int]]:
    """The default queue and the queue weights by normalised name, checked.

    Raises:
        ConfigurationError: a weight that is not a positive int, or an empty default queue.
    """
    clean: dict[str, int] = {}
    for name, weight in weights.items():
        if not positive_int(weight):
            raise ConfigurationError(f"queue weight of {name!r} must be a positive int, not {weight!r}")
        clean[normalize_queue(name, default_queue)] = weight
    queue = normalize_queue(default_queue, "")
    if not queue:
        raise ConfigurationError("default queue must not be empty")
    return queue, clean


def parse_url(url: str) -> UrlOptions:
    """Split ``url`` into libpq's part and the backend's options.

    Raises:
        ConfigurationError: not a ``postgresql://`` / ``postgres://`` URL, or a bad option value.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"a PostgreSQL URL must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(f"not a PostgreSQL URL (postgresql://...): {parts.scheme or url!r}")
    ours: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _INTS:
            try:
                ours[key] = int(value)
            except ValueError:
                raise ConfigurationError(f"?{key}= must be an integer, not {value!r}") from None
        elif key in _FLOATS:
            try:
                ours[key] = float(value)
            except ValueError:
                raise ConfigurationError(f"?{key}= must be a number, not {value!r}") from None
        elif key in _BOOLS:
            lowered = value.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ConfigurationError(f"?{key}= must be 1 or 0, not {value!r}")
            ours[key] = lowered in _TRUE
        elif key in _STRINGS:
            ours[key] = value
        elif key == "dead_ttl":
            ours[key] = dead_ttl_from_text(value)
        elif key == "queues":
            ours["queues"] = [q for q in value.split(",") if q.strip()]
        else:
            rest.append((key, value))
    # Not urlunsplit: it drops the "//" of an empty host (postgresql:///app, libpq's Unix socket default), and
    # "postgresql:/app" is not a URL to libpq.
    query = urlencode(rest)
    conninfo = f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    try:
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigurationError(f"bad PostgreSQL URL: {exc}") from None
    database = parts.path.lstrip("/") or "(default database)"
    return UrlOptions(conninfo=conninfo, where=f"postgresql at {host}:{port}/{database}", backend=ours)


def migrate_url(conninfo: str, schema: str) -> str:
    """A URL for ``python -m worker_postgres migrate`` naming the same server, database, user and schema.

    Never with the password (it goes into an error message): the command reads it from ``PGPASSWORD`` or
    ``~/.pgpass`` as libpq does, or the operator adds it. Other connection parameters (``sslmode``, ...) are kept.
    """
    try:
        params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items() if value is not None}
    except psycopg.Error:
        params = {}
    params.pop("password", None)
    host, port, user = params.pop("host", ""), params.pop("port", ""), params.pop("user", "")
    database = params.pop("dbname", "")
    netloc = ""
    if host and "," not in host and "/" not in host:
        netloc = f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{port}"
    else:  # several hosts, a Unix socket directory, or libpq's default: as query arguments
        params.update({key: value for key, value in (("host", host), ("port", port)) if value.strip(",")})
    if user:
        netloc = f"{quote(user, safe='')}@{netloc}"
    query = urlencode([*params.items(), ("schema", schema)])
    return f"postgresql://{netloc}/{quote(database, safe='')}?{query}"


def translate(exc: BaseException, where: str) -> BaseException:
    """The worker error for a psycopg (or pool) exception raised while talking to ``where``."""
    first = _first_line(exc) or type(exc).__name__
    if isinstance(exc, pgerrors.InvalidPassword | pgerrors.InvalidAuthorizationSpecification):
        return ConfigurationError(f"{where}: authentication failed ({first})")
    if isinstance(exc, pgerrors.InvalidCatalogName):
        return ConfigurationError(f"{where}: {first}")
    if isinstance(exc, pgerrors.UndefinedTable | pgerrors.InvalidSchemaName | pgerrors.UndefinedFunction):
        return ConfigurationError(
            f"{where}: the worker schema is missing or incomplete ({first}): run `await backend.migrate()`"
            " or `python -m worker_postgres migrate URL`"
        )
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return ConfigurationError(f"{where}: {first}")
    if isinstance(exc, PoolTimeout):
        return BackendUnavailableError(f"{where} is unreachable (no connection within the pool timeout)")
    if isinstance(exc, pgerrors.AdminShutdown | pgerrors.CrashShutdown | pgerrors.CannotConnectNow):
        return BackendUnavailableError(f"{where} is restarting ({first})")
    if isinstance(exc, psycopg.OperationalError) and _refused(exc):
        return ConfigurationError(f"{where}: the server refused the connection ({first})")
    if isinstance(exc, psycopg.OperationalError | OSError | TimeoutError):
        return BackendUnavailableError(f"{where} is unreachable ({first})")
    if isinstance(exc, psycopg.Error):
        return BackendError(f"{where}: {first}")
    return exc


@contextlib.contextmanager
def pg_errors(where: str) -> Iterator[None]:
    """Re-raise psycopg, pool and socket errors as worker errors naming ``where`` (never a password)."""
    try:
        yield
    except (psycopg.Error, PoolTimeout, OSError, TimeoutError) as exc:
        raise translate(exc, where) from exc


_REFUSALS = ("password authentication failed", "no pg_hba.conf entry", "does not exist", "permission denied")


def _refused(exc: psycopg.OperationalError) -> bool:
    """A connection the server answered and refused (login, database): settings to fix, not an outage."""
    if exc.sqlstate is not None:
        return exc.sqlstate.startswith(("28", "3D"))
    text = str(exc)
    return "FATAL" in text and any(reason in text for reason in _REFUSALS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
