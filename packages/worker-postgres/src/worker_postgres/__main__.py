"""``python -m worker_postgres migrate URL``: create or upgrade the worker schema (idempotent)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from worker_core.errors import WorkerError

from .backend import PostgresDurableBackend


async def _migrate(url: str) -> int:
    backend = PostgresDurableBackend.from_url(url, listen=False, pool_min=1, pool_max=1)
    try:
        return await backend.migrate()
    finally:
        await backend.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (0: migrated, 1: failed, 2: bad usage)."""
    parser = argparse.ArgumentParser(prog="python -m worker_postgres", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="create or upgrade the schema named by the URL (?schema=)")
    migrate.add_argument("url", help="postgresql://user@host:port/db?schema=worker")
    args = parser.parse_args(argv)
    try:
        version = asyncio.run(_migrate(args.url))
    except WorkerError as exc:
        sys.stderr.write(f"migration failed: {exc}\n")
        return 1
    sys.stdout.write(f"schema at version {version}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
