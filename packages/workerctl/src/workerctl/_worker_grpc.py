"""The gRPC side of ``workerctl worker``: its options, the safety check on where it listens, and the server.

A node serves go-worker's gRPC API only with ``--grpc-listen``. On a loopback address it may run without
authentication; on any other address it needs a bearer token (``--grpc-token``, ``--grpc-token-file`` or
``$WORKER_GRPC_TOKEN``) or mutual TLS (``--grpc-tls-client-ca``), unless ``--insecure`` says otherwise
explicitly. Tokens are never printed: the startup line says "token auth" and how many tokens.
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ._connection import fail

__all__ = ("TOKEN_ENV", "GrpcOptions", "grpc_options", "start_grpc")

TOKEN_ENV = "WORKER_GRPC_TOKEN"

F = TypeVar("F", bound=Callable[..., Any])

_EXPOSURE = click.Choice(["off", "open", "auth"])


@dataclass(frozen=True, slots=True)
class GrpcOptions:
    """What the command line asks of the node's gRPC server (``listen=None``: no server)."""

    listen: str | None = None
    handlers: str | None = None
    tokens: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    insecure: bool = False
    health: str = "open"
    reflection: str = "off"

    @property
    def mtls(self) -> bool:
        """Clients must present a certificate signed by ``--grpc-tls-client-ca``."""
        return bool(self.tls_client_ca and self.tls_cert and self.tls_key)

    def check(self) -> None:
        """Refuse what cannot work or is unsafe; a usage error (exit 2) names the flag to add."""
        if not self.listen:
            given = self.tokens or self.tls_cert or self.tls_key or self.tls_client_ca
            if given:
                raise click.UsageError("the --grpc-* token and TLS options need --grpc-listen")
            return
        if bool(self.tls_cert) != bool(self.tls_key):
            raise click.UsageError("--grpc-tls-cert and --grpc-tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise click.UsageError("--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key")
        if "auth" in (self.health, self.reflection) and not self.tokens:
            raise click.UsageError(
                "--grpc-health/--grpc-reflection auth needs a token (--grpc-token or --grpc-token-file)"
            )
        if not is_loopback(self.listen) and not self.tokens and not self.mtls and not self.insecure:
            raise click.UsageError(
                f"refusing to serve gRPC on {self.listen} (not a loopback address) without authentication: "
                f"give a token (--grpc-token-file, --grpc-token or ${TOKEN_ENV}) or mutual TLS "
                "(--grpc-tls-cert, --grpc-tls-key, --grpc-tls-client-ca); --insecure serves it anyway"
            )

    def describe(self, host_port: str) -> str:
        """The startup line's ``grpc=`` value: where, transport, and authentication (never a token)."""
        transport = "mTLS" if self.mtls else ("TLS" if self.tls_cert else "plaintext")
        auth = f"token auth ({len(self.tokens)} token{'s' if len(self.tokens) != 1 else ''})" if self.tokens else ""
        parts = [transport, auth] if auth else [transport]
        if not self.tokens and not self.mtls:
            parts.append("no auth")
        return f"{host_port} ({', '.join(parts)})"


def is_loopback(address: str) -> bool:
    """True when ``host:port`` binds only the loopback interface (``localhost``, ``127.0.0.0/8``, ``[::1]``)."""
    host = address.rpartition(":")[0].strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like wildcards are addresses; anything else is a name that may resolve anywhere


def read_tokens(values: tuple[str, ...], token_file: str | None) -> tuple[str, ...]:
    """Every token given: ``--grpc-token`` (repeatable, or ``$WORKER_GRPC_TOKEN``) and the file's lines."""
    tokens = [v.strip() for v in values]
    if token_file:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read --grpc-token-file {token_file}: {type(exc).__name__}") from None
        lines = [line.strip() for line in text.splitlines()]
        from_file = [line for line in lines if line and not line.startswith("#")]
        if not from_file:
            raise fail(f"--grpc-token-file {token_file} holds no token")
        tokens += from_file
    if any(not t or any(c.isspace() for c in t) for t in tokens):
        raise click.BadParameter("a token must be non-empty, without spaces", param_hint="'--grpc-token'")
    return tuple(dict.fromkeys(tokens))


def grpc_options(f: F) -> F:
    """Add the gRPC options to a click command; it receives them as one ``grpc: GrpcOptions`` argument."""
    options = [
        click.option(
            "--grpc-listen",
            metavar="HOST:PORT",
            envvar="WORKER_GRPC_LISTEN",
            help="Also serve go-worker's gRPC API here.",
        ),
        click.option(
            "--grpc-handlers",
            metavar="MODULE:ATTR",
            envvar="WORKER_GRPC_HANDLERS",
            help="gRPC handlers [default: the app's].",
        ),
        click.option(
            "--grpc-token",
            "grpc_token",
            multiple=True,
            metavar="TOKEN",
            envvar=TOKEN_ENV,
            help=f"Accept this bearer token (repeatable) [env {TOKEN_ENV}]; prefer --grpc-token-file.",
        ),
        click.option(
            "--grpc-token-file",
            type=click.Path(dir_okay=False),
            envvar="WORKER_GRPC_TOKEN_FILE",
            help="Accept the bearer tokens in this file (one a line; # comments).",
        ),
        click.option(
            "--grpc-tls-cert",
            "--tls-cert",
            "tls_cert",
            type=click.Path(dir_okay=False),
            envvar="WORKER_GRPC_TLS_CERT",
            help="gRPC certificate (PEM).",
        ),
        click.option(
            "--grpc-tls-key",
            "--tls-key",
            "tls_key",
            type=click.Path(dir_okay=False),
            envvar="WORKER_GRPC_TLS_KEY",
            help="gRPC private key (PEM).",
        ),
        click.option(
            "--grpc-tls-client-ca",
            "--tls-client-ca",
            "tls_client_ca",
            type=click.Path(dir_okay=False),
            envvar="WORKER_GRPC_TLS_CLIENT_CA",
            help="Require client certificates signed by this CA (mTLS).",
        ),
        click.option(
            "--insecure",
            "grpc_insecure",
            is_flag=True,
            envvar="WORKER_GRPC_INSECURE",
            help="Serve gRPC on a non-loopback address without token or mTLS.",
        ),
        click.option(
            "--grpc-health",
            type=_EXPOSURE,
            default="open",
            show_default=True,
            envvar="WORKER_GRPC_HEALTH",
            help="gRPC health checking.",
        ),
        click.option(
            "--grpc-reflection",
            type=_EXPOSURE,
            default="off",
            show_default=True,
            envvar="WORKER_GRPC_REFLECTION",
            help="gRPC reflection.",
        ),
    ]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grpc = GrpcOptions(
            listen=kwargs.pop("grpc_listen"),
            handlers=kwargs.pop("grpc_handlers"),
            tokens=read_tokens(kwargs.pop("grpc_token"), kwargs.pop("grpc_token_file")),
            tls_cert=kwargs.pop("tls_cert"),
            tls_key=kwargs.pop("tls_key"),
            tls_client_ca=kwargs.pop("tls_client_ca"),
            insecure=kwargs.pop("grpc_insecure"),
            health=kwargs.pop("grpc_health"),
            reflection=kwargs.pop("grpc_reflection"),
        )
        grpc.check()
        return f(*args, grpc=grpc, **kwargs)

    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _handlers(grpc: GrpcOptions, app: str, import_attr: Callable[[str, str], Any]) -> Any:
    if grpc.handlers:
        return import_attr(grpc.handlers, "'--grpc-handlers'")
    module = importlib.import_module(app.partition(":")[0])
    handlers = getattr(module, "grpc_handlers", None)
    if handlers is None:
        raise fail("--grpc-listen needs handlers: --grpc-handlers module:attr, or `grpc_handlers` in the app module")
    return handlers


async def start_grpc(
    grpc: GrpcOptions, app: str, manager: Any, import_attr: Callable[[str, str], Any]
) -> tuple[Any, str]:
    """Start the server; it and the startup line's ``grpc=`` text."""
    try:
        from worker_grpc import BearerTokenAuth, ServerTLS, serve, server_port
    except ImportError:
        raise fail("--grpc-listen needs worker-grpc: pip install 'workerctl[grpc]'") from None
    tls = None
    if grpc.tls_cert and grpc.tls_key:
        try:
            tls = ServerTLS.from_files(grpc.tls_cert, grpc.tls_key, grpc.tls_client_ca)
        except OSError as exc:
            raise fail(f"cannot read TLS files: {exc}") from None
    auth = BearerTokenAuth(grpc.tokens) if grpc.tokens else None
    assert grpc.listen is not None
    server = await serve(
        manager,
        _handlers(grpc, app, import_attr),
        grpc.listen,
        auth=auth,
        tls=tls,
        health=grpc.health,  # type: ignore[arg-type]  # a click.Choice of the same three values
        reflection=grpc.reflection,  # type: ignore[arg-type]
    )
    host = grpc.listen.rpartition(":")[0]
    return server, grpc.describe(f"{host}:{server_port(server)}")
