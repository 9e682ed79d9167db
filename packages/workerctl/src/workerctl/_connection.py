"""Connection flags shared by every ``durable`` command, and running an admin call with clean errors.

``--url`` reaches any durable backend whose package registers an admin (``sqlite:///tasks.db``,
``postgresql://...``, ``redis://...``) through :func:`worker_core.admin.open_admin`; the ``--redis-*`` flags are
go-worker's workerctl flags for Redis.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import click
from worker_core.admin import DurableAdmin, open_admin
from worker_core.errors import ConfigurationError, WorkerError
from worker_redis import UrlOptions, parse_url
from worker_redis.admin import RedisAdmin
from worker_redis.keys import DEFAULT_PREFIX, DEFAULT_QUEUE, wrap_prefix

from ._duration import DURATION

__all__ = ("Connection", "connection_options", "fail", "run_admin", "run_redis_admin")

T = TypeVar("T")
A = TypeVar("A", bound=DurableAdmin)
F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT = click.core.ParameterSource.DEFAULT
#: go-worker's workerctl default address (its docker-compose Redis); the password default is empty.
DEFAULT_ADDR = "localhost:6380"


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to reach Redis. ``password`` is never printed: ``where`` names host and port only."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    tls_insecure: bool
    timeout: float
    prefix: str
    default_queue: str
    url: str | None = None  # the --redis-url for redis-py (the backend's own query options taken out), if given
    store_url: str | None = None  # a --url of another backend (sqlite:, postgresql:, ...): no Redis settings apply

    @property
    def is_redis(self) -> bool:
        """Whether the store is Redis (the Redis-only commands, snapshots and dump, need it)."""
        return self.store_url is None

    @property
    def where(self) -> str:
        """``redis at host:port``, or the ``--url`` without its password (what error messages show)."""
        if self.store_url is not None:
            return _without_password(self.store_url)
        return f"redis at {self.host}:{self.port}"

    def client(self) -> Any:
        """A ``redis.asyncio.Redis`` for these settings (connects lazily)."""
        from redis.asyncio import Redis  # lazy: `workerctl --help` stays fast
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {}
        if self.tls:
            options.update(ssl=True, ssl_min_version=ssl.TLSVersion.TLSv1_2)
            if self.tls_insecure:
                options.update(ssl_cert_reqs="none", ssl_check_hostname=False)
        if self.url is not None:  # every option of the URL (ssl_ca_certs=..., say) applies, as for the worker
            url = self.url
            options.pop("ssl", None)  # the scheme says it: --tls turns redis:// into rediss://
            if self.tls and url.startswith("redis:"):
                url = "rediss:" + url[len("redis:") :]
            try:
                return Redis.from_url(
                    url,
                    password=self.password,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                    **options,
                )
            except (TypeError, ValueError) as exc:
                raise click.BadParameter(f"invalid options: {exc}", param_hint="'--redis-url'") from None
        return Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),  # one attempt: an operator wants the error now, not after backoff
            **options,
        )

    def admin(self) -> DurableAdmin:
        """The admin of the store: a :class:`RedisAdmin` over a new client, or the ``--url`` backend's admin."""
        if self.store_url is not None:
            return open_admin(self.store_url)
        return self.redis_admin()

    def redis_admin(self) -> RedisAdmin:
        """A :class:`RedisAdmin` over a new client (a CLI error when ``--url`` names another backend)."""
        if self.store_url is not None:
            scheme = urlsplit(self.store_url).scheme
            raise fail(f"this command works on Redis only, not on {scheme}:// stores")
        return RedisAdmin(self.client(), prefix=self.prefix, default_queue=self.default_queue, where=self.where)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return parts._replace(netloc=f"{user}@{netloc[2]}").geturl()


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.strip().rpartition(":")
    if not sep:
        host, port = addr.strip(), "6379"
    host = host.strip("[]") or "localhost"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{addr!r} is not host:port", param_hint="'--redis-addr'")
    return host, int(port)


def _from_url(url: str) -> tuple[UrlOptions, str, int, int, str | None, str | None, bool]:
    """Read ``--redis-url`` exactly as the worker's backend reads it (one parser: ``?prefix=`` included)."""
    try:
        parsed = parse_url(url)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--redis-url'") from None
    parts = urlsplit(parsed.url)
    path = parts.path.strip("/")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    host, port = parts.hostname or "localhost", parts.port or 6379
    return parsed, host, port, int(path or 0), username, password, parts.scheme == "rediss"


def connection_options(fn: F) -> F:
    """Add the connection flags to a command; it receives them as one ``conn: Connection`` argument."""

    @click.option(
        "--url",
        "store_url",
        envvar="WORKER_DURABLE_URL",
        metavar="URL",
        help="Any durable store: redis://..., sqlite:///tasks.db, postgresql://... [env WORKER_DURABLE_URL]",
    )
    @click.option(
        "--redis-url",
        envvar="WORKER_REDIS_URL",
        metavar="URL",
        help="redis://[user:password@]host:port/db or rediss://... [env WORKER_REDIS_URL]",
    )
    @click.option(
        "--redis-addr", metavar="HOST:PORT", help=f"Redis address when no URL is given [default: {DEFAULT_ADDR}]"
    )
    @click.option(
        "--redis-password",
        envvar="WORKER_REDIS_PASSWORD",
        default="",
        metavar="PASSWORD",
        help="Redis password (default: none) [env WORKER_REDIS_PASSWORD]",
    )
    @click.option(
        "--redis-prefix",
        envvar="WORKER_REDIS_PREFIX",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Key prefix, wrapped as {prefix} [env WORKER_REDIS_PREFIX]",
    )
    @click.option("--tls", is_flag=True, help="Connect with TLS (1.2 or newer)")
    @click.option("--tls-insecure", is_flag=True, help="With TLS, skip certificate verification")
    @click.option("--timeout", type=DURATION, default="5s", show_default=True, help="Per-command Redis timeout")
    @click.option("--default-queue", default=DEFAULT_QUEUE, show_default=True, help="Queue of tasks that name none")
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        store_url: str | None,
        redis_url: str | None,
        redis_addr: str | None,
        redis_password: str,
        redis_prefix: str,
        tls: bool,
        tls_insecure: bool,
        timeout: float,
        default_queue: str,
        **kwargs: Any,
    ) -> Any:
        ctx = click.get_current_context()
        cli = click.core.ParameterSource.COMMANDLINE
        if store_url:
            store_from_cli = ctx.get_parameter_source("store_url") == cli
            redis_from_cli = cli in (ctx.get_parameter_source("redis_url"), ctx.get_parameter_source("redis_addr"))
            if store_from_cli and redis_from_cli:
                raise click.UsageError("use only one of --url, --redis-url or --redis-addr")
            scheme = urlsplit(store_url).scheme.lower()
            if not scheme:
                raise click.BadParameter(f"{store_url!r} is not a URL (no scheme)", param_hint="'--url'")
            if scheme in ("redis", "rediss"):
                if store_from_cli or not redis_from_cli:
                    redis_url, redis_addr = store_url, None
            elif store_from_cli or not redis_from_cli:
                return fn(*args, conn=_store_connection(store_url, timeout, default_queue), **kwargs)
        url_from_cli = ctx.get_parameter_source("redis_url") == cli
        if redis_url and redis_addr and url_from_cli:
            raise click.UsageError("use only one of --redis-url or --redis-addr")
        parsed: UrlOptions | None = None
        if redis_url and not redis_addr:
            parsed, host, port, db, username, password, url_tls = _from_url(redis_url)
            tls = tls or url_tls
            password = password or redis_password or None
            # The URL's ?prefix= and ?default_queue= hold unless the flag (or its variable) says otherwise.
            if parsed.prefix is not None and ctx.get_parameter_source("redis_prefix") == _DEFAULT:
                redis_prefix = parsed.prefix
            if parsed.default_queue is not None and ctx.get_parameter_source("default_queue") == _DEFAULT:
                default_queue = parsed.default_queue
        else:
            host, port = _split_addr(redis_addr or DEFAULT_ADDR)
            db, username, password = 0, None, redis_password or None
        try:
            wrap_prefix(redis_prefix)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="'--redis-prefix'") from None
        conn = Connection(
            host=host,
            port=port,
            db=db,
            username=username,
            password=password,
            tls=tls,
            tls_insecure=tls_insecure,
            timeout=timeout if timeout > 0 else 5.0,
            prefix=redis_prefix.strip() or DEFAULT_PREFIX,
            default_queue=default_queue.strip() or DEFAULT_QUEUE,
            url=parsed.url if parsed is not None else None,
        )
        return fn(*args, conn=conn, **kwargs)

    return wrapper  # type: ignore[return-value]


def _store_connection(url: str, timeout: float, default_queue: str) -> Connection:
    """A connection to a non-Redis store: only the URL (and its own query options) matter."""
    return Connection(
        host="",
        port=0,
        db=0,
        username=None,
        password=None,
        tls=False,
        tls_insecure=False,
        timeout=timeout if timeout > 0 else 5.0,
        prefix=DEFAULT_PREFIX,
        default_queue=default_queue.strip() or DEFAULT_QUEUE,
        store_url=url,
    )


def fail(message: str) -> click.ClickException:
    """A runtime error: click prints ``Error: <message>`` on stderr (one line) and exits 1."""
    return click.ClickException(" ".join(message.split()))


def run_admin(conn: Connection, call: Callable[[DurableAdmin], Awaitable[T]]) -> T:
    """Run ``call`` with a fresh admin in a new event loop; worker errors become one-line CLI errors."""
    return _run(conn.admin, call)


def run_redis_admin(conn: Connection, call: Callable[[RedisAdmin], Awaitable[T]]) -> T:
    """:func:`run_admin` for the Redis-only commands (a CLI error for a ``--url`` of another backend)."""
    return _run(conn.redis_admin, call)


def _run(make: Callable[[], A], call: Callable[[A], Awaitable[T]]) -> T:
    async def main() -> T:
        admin = make()
        try:
            return await call(admin)
        finally:
            await admin.aclose()

    try:
        return asyncio.run(main())
    except WorkerError as exc:
        raise fail(str(exc)) from None
