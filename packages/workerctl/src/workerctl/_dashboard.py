"""``workerctl dashboard ...``: run worker-dashboard's web UI (an optional package, imported only here)."""

from __future__ import annotations

import importlib.util
import os

import click

from ._connection import fail
from ._groups import CONTEXT, cli

__all__ = ("dashboard",)


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dashboard(args: tuple[str, ...]) -> None:
    """Run the web dashboard (needs the worker-dashboard package) until interrupted.

    Every argument goes to the dashboard: --url URL (else WORKER_DURABLE_URL, then WORKER_REDIS_URL),
    --listen HOST:PORT (127.0.0.1:8080), --token TOKEN (WORKER_DASHBOARD_TOKEN; without it the dashboard is
    anonymous and read-only), --read-only, --redact PATTERN (repeatable), --refresh SECONDS, --title NAME.

    \b
    Example:
      WORKER_DASHBOARD_TOKEN=$(openssl rand -hex 16) workerctl dashboard --url redis://localhost:6379/0
      workerctl dashboard --url redis://localhost:6379/0 --read-only --listen 0.0.0.0:8080
    """
    if importlib.util.find_spec("worker_dashboard") is None:
        raise fail("the dashboard needs the worker-dashboard package: pip install worker-dashboard")
    from worker_dashboard.__main__ import main

    argv = list(args)
    has_url = any(a == "--url" or a.startswith("--url=") for a in argv)
    if not has_url and not os.environ.get("WORKER_DURABLE_URL") and os.environ.get("WORKER_REDIS_URL"):
        argv = ["--url", os.environ["WORKER_REDIS_URL"], *argv]
    code = main(argv, prog="workerctl dashboard")
    if code:
        raise SystemExit(code)
