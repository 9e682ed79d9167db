"""The command tree: ``workerctl``, ``workerctl durable``, ``workerctl durable dlq|snapshot``."""

from __future__ import annotations

import importlib.metadata
import platform

import click

__all__ = ("cli", "dlq", "durable", "schedules", "snapshot", "version_text")

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def version_text() -> str:
    """``<version> (python=..., redis-py=..., os=<os>/<arch>)``, the shape of go-worker's version line."""
    try:
        ours = importlib.metadata.version("workerctl")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        ours = "dev"
    try:
        redis_py = importlib.metadata.version("redis")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        redis_py = "unknown"
    system = f"{platform.system().lower()}/{platform.machine().lower()}"
    return f"{ours} (python={platform.python_version()}, redis-py={redis_py}, os={system})"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


@click.group(context_settings=CONTEXT)
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Print the version."
)
def cli() -> None:
    """Operator CLI for durable queues (SQLite, PostgreSQL, Redis; go-worker compatible) and worker processes.

    Mutating commands are dry runs unless --apply is given. Connection flags go after the command:
    --url (any store; env WORKER_DURABLE_URL), or --redis-url / --prefix (env WORKER_REDIS_URL,
    WORKER_REDIS_PREFIX).

    \b
    Example:
      export WORKER_DURABLE_URL=sqlite:///tasks.db
      workerctl durable stats
    """


@cli.group(context_settings=CONTEXT)
def durable() -> None:
    """Inspect and repair durable queues: counts, tasks, the DLQ, pauses, snapshots.

    \b
    Example:
      workerctl durable inspect --url sqlite:///tasks.db
      workerctl durable inspect --redis-url redis://localhost:6379/0
    """


@durable.group(context_settings=CONTEXT)
def dlq() -> None:
    """The dead-letter queue: list, show and replay failed tasks.

    \b
    Example:
      workerctl durable dlq list --queue emails
    """


@durable.group(context_settings=CONTEXT)
def snapshot() -> None:
    """Export tasks to JSON lines and import them into another Redis.

    \b
    Example:
      workerctl durable snapshot export --dlq --out dead.jsonl
    """


@durable.group(context_settings=CONTEXT)
def schedules() -> None:
    """Durable schedules: list them, pause or resume them on every node, trigger a run now.

    \b
    Example:
      workerctl durable schedules list
    """
