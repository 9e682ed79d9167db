"""``workerctl durable snapshot export|import``: JSON lines, binary payloads as base64."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import click
from worker_core.errors import ConfigurationError
from worker_redis.admin import RedisAdmin, SnapshotEntry

from ._connection import Connection, connection_options, fail, run_redis_admin
from ._groups import CONTEXT, snapshot

__all__ = ("snapshot_export", "snapshot_import")

_MAX_LINE = 10 * 1024 * 1024  # go-worker's per-line limit


@snapshot.command("export", context_settings=CONTEXT)
@click.option("--out", "out_path", default="-", show_default=True, help="Output file ('-' = stdout).")
@click.option("--queue", default="", help="Only this queue (default: every known queue).")
@click.option("--limit", default=100, show_default=True, help="Tasks per queue and status (0 = all).")
@click.option("--ready/--no-ready", default=True, show_default=True, help="Export ready tasks.")
@click.option("--processing", is_flag=True, help="Export leased tasks.")
@click.option("--dlq", is_flag=True, help="Export dead-lettered tasks.")
@connection_options
def snapshot_export(
    out_path: str, queue: str, limit: int, ready: bool, processing: bool, dlq: bool, conn: Connection
) -> None:
    """Write tasks (every hash field, payload included) as JSON lines.

    Each line is go-worker's {"id","status","queue","score","fields"}; a field that is not UTF-8 (a
    protobuf payload) goes to "fields_b64" as base64 instead, so binary payloads survive the trip.

    \b
    Example:
      workerctl durable snapshot export --dlq --processing --limit 0 --out backup.jsonl
    """
    if limit < 0:
        raise click.UsageError("--limit must be >= 0")
    if out_path == "-":
        n = run_redis_admin(conn, lambda admin: _export(admin, sys.stdout, queue, limit, ready, processing, dlq))
        return
    path = Path(out_path)
    tmp = path.with_name(path.name + ".part")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            n = run_redis_admin(conn, lambda admin: _export(admin, out, queue, limit, ready, processing, dlq))
        tmp.replace(path)
    except OSError as exc:
        raise fail(f"cannot write {out_path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    click.echo(f"exported {n} snapshot item(s) to {out_path}", err=True)


async def _export(
    admin: RedisAdmin, out: IO[str], queue: str, limit: int, ready: bool, processing: bool, dlq: bool
) -> int:
    n = 0
    entries = admin.export(queues=[queue] if queue else (), ready=ready, processing=processing, dlq=dlq, limit=limit)
    async for entry in entries:
        out.write(json.dumps(entry.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
        n += 1
    out.flush()
    return n


def _read_entries(in_path: str) -> list[SnapshotEntry]:
    """Parse and validate every line first: a bad line is an error and nothing is imported."""
    if in_path == "-":
        stream = sys.stdin.buffer
        lines = stream.read().splitlines()
    else:
        try:
            lines = Path(in_path).read_bytes().splitlines()
        except OSError as exc:
            raise fail(f"cannot read {in_path}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        if len(line) > _MAX_LINE:
            raise fail(f"{where}: longer than 10 MiB")
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise fail(f"{where}: not valid JSON ({exc})") from None
        try:
            entries.append(SnapshotEntry.from_json(data, where=where))
        except ConfigurationError as exc:
            raise fail(str(exc)) from None
    return entries


@snapshot.command("import", context_settings=CONTEXT)
@click.option("--in", "in_path", default="-", show_default=True, help="Input file ('-' = stdin).")
@click.option("--apply", is_flag=True, help="Import (without it: a dry run).")
@connection_options
def snapshot_import(in_path: str, apply: bool, conn: Connection) -> None:
    """Write the tasks of a snapshot: each task's hash is replaced, then placed by its status.

    The whole file is validated first; a bad line is an error and nothing is written.

    \b
    Example:
      workerctl durable snapshot import --in backup.jsonl --apply --redis-url redis://new-host:6379/0
    """
    entries = _read_entries(in_path)
    if not apply:
        click.echo(f"dry-run: use --apply to import {len(entries)} snapshot item(s)")
        return
    n = run_redis_admin(conn, lambda admin: admin.import_entries(entries))
    click.echo(f"imported {n} snapshot item(s)")
