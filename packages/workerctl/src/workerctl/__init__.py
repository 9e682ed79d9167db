"""workerctl: the operator CLI for worker's durable Redis queues, and the worker process."""

from __future__ import annotations

from ._app import cli as cli
from ._app import main as main
from ._groups import version_text as version_text

__all__ = ("cli", "main", "version_text")
