"""Parse a ``redis://`` / ``rediss://`` URL into a redis-py client plus the backend's own options.

This is the one place a Redis target is read: the backend (``from_url``, a ``TaskManager`` URL), the admin
API (``RedisAdmin.from_url``) and workerctl all call :func:`parse_url`, so one URL means the same queues
everywhere (``?prefix=`` included).

The backend's options may ride in the URL's query (so ``TaskManager(durable_backend="redis://...")`` can
set them): ``prefix``, ``default_queue``, ``batch_size``, ``cluster`` (``1``/``0``; absent: detected),
``rate_limit`` (``<rate>/<burst>``), ``leader_lock`` (seconds), ``extra_deliveries``, ``recent_outcomes``,
``dead_ttl`` (seconds a dead task is kept; ``0``: forever) and
``queues`` (``a,b``: lease only from these). Every other query argument goes to
redis-py. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from worker_core.durable.types import dead_ttl_from_text
from worker_core.errors import ConfigurationError

__all__ = ("UrlOptions", "default_client_options", "make_client", "parse_url")

_OURS = frozenset(
    {
        "prefix",
        "default_queue",
        "batch_size",
        "cluster",
        "rate_limit",
        "leader_lock",
        "extra_deliveries",
        "queues",
        "recent_outcomes",
        "dead_ttl",
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class UrlOptions:
    """What :func:`parse_url` found: the URL for redis-py and the backend options from its query."""

    url: str
    where: str
    cluster: bool | None
    backend: dict[str, Any]

    @property
    def prefix(self) -> str | None:
        """The ``?prefix=`` of the URL (``None`` when it has none)."""
        value = self.backend.get("prefix")
        return None if value is None else str(value)

    @property
    def default_queue(self) -> str | None:
        """The ``?default_queue=`` of the URL (``None`` when it has none)."""
        value = self.backend.get("default_queue")
        return None if value is None else str(value)


def parse_url(url: object) -> UrlOptions:
    """Split ``url`` into redis-py's URL and our options; a bad URL is a :class:`ConfigurationError`."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("redis URL must be a non-empty string")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid redis URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigurationError(f"redis URL must start with redis:// or rediss://, not {parts.scheme or 'nothing'!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigurationError(f"redis URL database must be a number, not {path!r}")
    where = f"redis at {parts.hostname or 'localhost'}:{port or 6379}"
    ours: dict[str, Any] = {}
    cluster: bool | None = None
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OURS:
            rest.append((key, value))
        elif key == "cluster":
            low = value.strip().lower()
            if low not in _TRUE | _FALSE:
                raise ConfigurationError(f"redis URL: cluster must be 1 or 0, not {value!r}")
            cluster = low in _TRUE
        elif key in ("prefix", "default_queue"):
            ours[key] = value
        elif key in ("batch_size", "extra_deliveries", "recent_outcomes"):
            ours[key] = _number(key, value, int)
        elif key == "queues":  # queues=a,b: lease only from these (repeatable)
            ours[key] = [*ours.get(key, []), *(q.strip() for q in value.split(",") if q.strip())]
        elif key == "dead_ttl":
            ours[key] = dead_ttl_from_text(value)
        elif key == "leader_lock":
            ours[key] = _number(key, value, float)
        else:  # rate_limit=<rate>/<burst>
            rate, sep, burst = value.partition("/")
            if not sep:
                raise ConfigurationError(f"redis URL: rate_limit must be <rate>/<burst>, not {value!r}")
            ours[key] = (_number(key, rate, float), _number(key, burst, int))
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return UrlOptions(url=clean, where=where, cluster=cluster, backend=ours)


def _number(key: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(f"redis URL: {key} must be a number, not {value!r}") from None


class _Fatal(Exception):
    """Carries an error that retrying cannot fix through redis-py's retry loop."""


class _Retry(Retry):
    """redis-py's retry, except for wrong credentials (an ``AuthenticationError`` is a ``ConnectionError``)."""

    async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
        async def guarded() -> Any:
            try:
                return await do()
            except (rex.AuthenticationError, rex.AuthorizationError) as exc:
                raise _Fatal(exc) from exc

        try:
            return await super().call_with_retry(guarded, fail, *args, **kwargs)
        except _Fatal as fatal:
            raise fatal.args[0] from None


def default_client_options() -> dict[str, Any]:
    """Timeouts and reconnect policy of clients built from a URL.

    A lost or refused connection is retried by redis-py with a short exponential backoff (about 0.6 s in
    all); past that the call raises :class:`~worker_core.errors.BackendUnavailableError`, and the
    TaskManager's durable loop retries with its own, longer backoff. A server that does not answer (frozen,
    or a network that drops packets) is not retried: the call raises after ``socket_timeout`` (10 s; with
    timeouts retried too it took 60 s), or ``socket_connect_timeout`` (5 s) for a new connection.
    ``decode_responses`` stays off: payloads are bytes.
    """
    return {
        "socket_timeout": 10.0,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": _Retry(ExponentialBackoff(cap=0.32, base=0.02), 5, (rex.ConnectionError,)),
    }


def make_client(url: str, *, cluster: bool, options: dict[str, Any] | None = None) -> Any:
    """A ``redis.asyncio`` client (``RedisCluster`` when ``cluster``) for ``url``; no connection is made."""
    kwargs = {**default_client_options(), **(options or {})}
    try:
        if cluster:
            from redis.asyncio.cluster import RedisCluster

            kwargs.pop("health_check_interval", None)
            return RedisCluster.from_url(url, **kwargs)
        from redis.asyncio import Redis

        client = Redis.from_url(url, **kwargs)
        # Build (not connect) one connection now: unknown query arguments fail here, not at first use.
        client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return client
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid redis URL options: {exc}") from None
