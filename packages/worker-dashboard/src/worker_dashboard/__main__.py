"""``python -m worker_dashboard --url redis://... [--listen 127.0.0.1:8080] [--token ...] [--read-only]``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ("main", "parse_listen")

logger = logging.getLogger("worker_dashboard")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6); the host defaults to 127.0.0.1."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen must be host:port, not {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser(prog: str = "python -m worker_dashboard") -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog=prog, description="Web dashboard for durable queues.")
    p.add_argument("--url", default=os.environ.get("WORKER_DURABLE_URL"), help="store URL (env WORKER_DURABLE_URL)")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), help="host:port (127.0.0.1:8080)")
    p.add_argument(
        "--token",
        default=os.environ.get("WORKER_DASHBOARD_TOKEN"),
        help="sign-in token that allows actions (env WORKER_DASHBOARD_TOKEN); without it: anonymous read-only",
    )
    p.add_argument("--read-only", action="store_true", help="refuse every action")
    p.add_argument(
        "--redact",
        action="append",
        default=None,
        help="key-name pattern whose values are hidden (repeatable; default password, secret, token, authorization)",
    )
    p.add_argument("--refresh", type=float, default=2.0, help="seconds between live updates (2)")
    p.add_argument("--title", default="worker", help="page header")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m worker_dashboard") -> int:
    """Run the dashboard until interrupted (``prog`` names the command in ``--help``)."""
    import uvicorn
    from worker_core.errors import WorkerError

    from ._app import dashboard_app
    from ._redact import DEFAULT_REDACT

    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.url:
        sys.stderr.write("error: --url (or WORKER_DURABLE_URL) is required\n")
        return 2
    host, port = args.listen
    if not _loopback(host) and not args.token:
        logger.warning("listening on %s without --token: the dashboard is read-only and readable by anyone", host)
    try:
        app = dashboard_app(
            args.url,
            token=args.token or None,
            read_only=args.read_only,
            redact=args.redact if args.redact is not None else DEFAULT_REDACT,
            refresh=args.refresh,
            title=args.title,
        )
    except (WorkerError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"worker dashboard on http://{host}:{port}/\n")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
