"""Assemble the command tree and run it with clean errors (no traceback unless WORKERCTL_DEBUG=1)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from . import _dashboard, _dlq, _enqueue, _meta, _read, _schedules, _snapshot, _worker, _write
from ._groups import cli

__all__ = ("cli", "main")

_COMMAND_MODULES = (
    _dashboard,
    _dlq,
    _enqueue,
    _meta,
    _read,
    _schedules,
    _snapshot,
    _worker,
    _write,
)  # imported to register commands


def main(argv: Sequence[str] | None = None) -> None:
    """Run workerctl: usage errors exit 2, runtime errors print one ``Error:`` line and exit 1."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="workerctl")
    except BrokenPipeError:
        # `workerctl durable dump | head`: the reader left. Point stdout at devnull so the interpreter's
        # final flush does not fail again, and exit quietly (the Python docs' recipe for SIGPIPE).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # a bug, not bad input: still one line, unless asked for the traceback
        if os.environ.get("WORKERCTL_DEBUG") == "1":
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        hint = "(WORKERCTL_DEBUG=1 shows the traceback)"
        click.echo(f"Error: unexpected {type(exc).__name__}: {message} {hint}", err=True)
        sys.exit(1)
