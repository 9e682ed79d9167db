"""``workerctl durable dlq list|show|replay``."""

from __future__ import annotations

import json

import click
from worker_core.admin import DurableAdmin, MoveResult, rfc3339
from worker_core.errors import ConfigurationError
from worker_redis.admin import MAX_IDS, clean_ids

from ._connection import Connection, connection_options, fail, run_admin
from ._groups import CONTEXT, dlq
from ._read import emit_json

__all__ = ("dlq_list", "dlq_replay", "dlq_show")


def _age(ms: int) -> str:
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dlq.command("list", context_settings=CONTEXT)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Entries to show.")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Entries to skip.")
@click.option("--queue", default="", help="Only this queue.")
@click.option("--handler", default="", help="Only this handler.")
@click.option("--query", default="", help="Case-insensitive substring of the id, queue or handler.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@connection_options
def dlq_list(limit: int, offset: int, queue: str, handler: str, query: str, as_json: bool, conn: Connection) -> None:
    """List dead-lettered tasks, newest first, with their last error.

    \b
    Example:
      workerctl durable dlq list --queue emails --query timeout
    """
    page = run_admin(
        conn, lambda admin: admin.dlq(limit=limit, offset=offset, queue=queue, handler=handler, query=query)
    )
    if as_json:
        emit_json(
            {
                "entries": [e.to_json() for e in page.entries],
                "total": page.total,
                "offset": page.offset,
                "limit": page.limit,
                "scanned": page.scanned,
                "truncated": page.truncated,
            }
        )
        return
    if not page.entries:
        click.echo(f"no DLQ entries (DLQ size: {page.total})")
        return
    rows = [("ID", "QUEUE", "HANDLER", "ATTEMPTS", "AGE", "LAST ERROR")]
    for e in page.entries:
        error = e.last_error.splitlines()[0] if e.last_error else ""
        rows.append((e.id, e.queue, e.handler, str(e.attempts), _age(e.age_ms), error[:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    shown = f"{len(page.entries)} of {page.total}"
    click.echo(f"({shown} DLQ entries{'; scan limit reached, narrow the filters' if page.truncated else ''})")


@dlq.command("show", context_settings=CONTEXT)
@click.option("--id", "task_id", required=True, help="Task id.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@connection_options
def dlq_show(task_id: str, as_json: bool, conn: Connection) -> None:
    """Show one dead task: queue, handler, attempts, when and why it failed (type, message, traceback), metadata.

    \b
    Example:
      workerctl durable dlq show --id 3f0c0a4e-6d1e-4a8e-9a43-0c6b7c7d2f10
    """
    detail = run_admin(conn, lambda admin: admin.dlq_entry(task_id))
    data = detail.entry.to_json()
    data.update(
        failed_at_ms=detail.failed_at_ms,
        updated_at_ms=detail.updated_at_ms,
        payload_size=detail.payload_size,
        metadata=dict(detail.metadata),
        error_type=detail.error_type,
        traceback=detail.traceback,
    )
    if as_json:
        emit_json(data)
        return
    e = detail.entry
    lines = [
        ("id", e.id),
        ("queue", e.queue),
        ("handler", e.handler),
        ("attempts", str(e.attempts)),
        ("failed_at", f"{rfc3339(detail.failed_at_ms)} ({_age(e.age_ms)} ago)" if detail.failed_at_ms else "-"),
        ("updated_at", rfc3339(detail.updated_at_ms) if detail.updated_at_ms else "-"),
        ("payload_size", f"{detail.payload_size} bytes"),
        ("metadata", json.dumps(dict(detail.metadata), sort_keys=True)),
        ("last_error", e.last_error or "-"),
        ("error_type", detail.error_type or "-"),
    ]
    for key, value in lines:
        click.echo(f"{key + ':':<14}{value}")
    if detail.traceback:
        click.echo("traceback:")
        for line in detail.traceback.rstrip().splitlines():
            click.echo(f"  {line}")


@dlq.command("replay", context_settings=CONTEXT)
@click.option("--batch", default=100, show_default=True, help="Entries to replay, oldest first (<= 0: 100).")
@click.option("--all", "replay_all", is_flag=True, help="Replay the whole DLQ (as it is now), oldest first.")
@click.option("--id", "ids", multiple=True, help="Replay only these ids (repeatable; comma-separated too).")
@click.option("--reset-attempts", is_flag=True, help="Give the tasks a fresh retry budget (attempts = 0).")
@click.option("--show-counts/--no-show-counts", default=True, show_default=True, help="Print the DLQ size.")
@click.option("--apply", is_flag=True, help="Make the change (without it: a dry run).")
@connection_options
def dlq_replay(
    batch: int,
    replay_all: bool,
    ids: tuple[str, ...],
    reset_attempts: bool,
    show_counts: bool,
    apply: bool,
    conn: Connection,
) -> None:
    """Move dead tasks back to their queues' ready sets: the oldest first, or the given ids.

    \b
    Example:
      workerctl durable dlq replay --batch 10 --apply
      workerctl durable dlq replay --id 3f0c0a4e-6d1e-4a8e-9a43-0c6b7c7d2f10 --reset-attempts --apply
    """
    if batch <= 0:
        batch = 100
    try:
        wanted = clean_ids(ids, max_ids=MAX_IDS)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--id'") from None
    if wanted and replay_all:
        raise click.UsageError("use only one of --id or --all")

    async def call(admin: DurableAdmin) -> MoveResult | None:
        if show_counts:
            click.echo(f"DLQ size before: {await admin.dlq_size()}")
        if not apply:
            what = f"{len(wanted)} DLQ item(s)" if wanted else ("all DLQ items" if replay_all else None)
            click.echo(f"dry-run: use --apply to replay {what or f'up to {batch} DLQ item(s)'}")
            return None
        if wanted:
            missing = await admin.missing_ids(wanted)
            if missing:
                raise fail(f"task {missing[0]} not found")
            result = await admin.replay_dlq_ids(wanted, reset_attempts=reset_attempts)
        else:
            result = await admin.replay_dlq(0 if replay_all else batch, reset_attempts=reset_attempts)
        click.echo(f"replayed {result.count} DLQ item(s)")
        if show_counts:
            click.echo(f"DLQ size after: {await admin.dlq_size()}")
        return result

    run_admin(conn, call)
