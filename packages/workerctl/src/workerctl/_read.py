"""Read-only commands: inspect, queues, stats (with --watch), paused, get, dump."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click
from worker_core.admin import DurableAdmin, Overview, TaskRecord, rfc3339
from worker_core.errors import WorkerError
from worker_redis.admin import RedisAdmin

from ._connection import Connection, connection_options, fail, run_admin, run_redis_admin
from ._duration import DURATION
from ._groups import CONTEXT, durable

__all__ = ("dump", "get", "inspect", "paused", "queues", "stats")


def emit_json(data: Any) -> None:
    """One compact JSON document on one line."""
    click.echo(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def queue_line(name: str, ready: int, processing: int, dead: int | None = None, paused: bool = False) -> str:
    """go-worker's ``queue=<q> ready=<n> processing=<n>``, plus ours: ``dead=<n>`` and ``paused=true``."""
    line = f"queue={name} ready={ready} processing={processing}"
    if dead is not None:
        line += f" dead={dead}"
    if paused:
        line += " paused=true"
    return line


def totals_line(ov: Overview) -> str:
    """``ready=<sum> processing=<sum> dead=<DLQ length>`` (the real dead count, unlike go-worker's queues)."""
    return f"ready={ov.total_ready} processing={ov.total_processing} dead={ov.dead}"


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
queue_option = click.option("--queue", default="", help="Only this queue (default: every known queue).")


@durable.command(context_settings=CONTEXT)
@queue_option
@click.option("--peek", default=5, show_default=True, help="Ready ids to show with --show-ids.")
@click.option("--show-ids", is_flag=True, help="Show the first ready ids of --queue.")
@json_option
@connection_options
def inspect(queue: str, peek: int, show_ids: bool, as_json: bool, conn: Connection) -> None:
    """Print ready and processing counts per queue and the totals.

    \b
    Example:
      workerctl durable inspect --queue emails --show-ids --peek 3
    """

    async def call(admin: DurableAdmin) -> tuple[Overview, list[str] | None]:
        ov = await admin.overview([queue] if queue else (), count_dead=False)
        ids = None
        if show_ids and peek > 0 and queue:
            ids = await admin.ids_from("ready", from_queue=queue, limit=peek)
        return ov, ids

    ov, ids = run_admin(conn, call)
    if as_json:
        data = ov.to_json()
        for q in data["queues"]:
            q.pop("dead")
        if ids is not None:
            data["ready_ids"] = ids
        emit_json(data)
        return
    for q in ov.queues:
        click.echo(queue_line(q.name, q.ready, q.processing, paused=q.paused))
    click.echo(totals_line(ov))
    if show_ids and peek > 0:
        if not queue:
            click.echo("ready IDs: specify --queue to display IDs")
        else:
            click.echo("ready IDs: " + (", ".join(ids) if ids else "none"))


@durable.command(context_settings=CONTEXT)
@click.option("--with-counts", is_flag=True, help="Also print ready, processing and dead counts.")
@json_option
@connection_options
def queues(with_counts: bool, as_json: bool, conn: Connection) -> None:
    """List the known queues.

    \b
    Example:
      workerctl durable queues --with-counts
    """
    ov = run_admin(conn, lambda admin: admin.overview(count_dead=with_counts or as_json))
    if as_json:
        emit_json({"queues": [q.to_json() for q in ov.queues], "dead": ov.dead})
        return
    for q in ov.queues:
        click.echo(queue_line(q.name, q.ready, q.processing, q.dead, q.paused) if with_counts else q.name)
    if with_counts:
        click.echo(totals_line(ov))


def stats_table(ov: Overview) -> str:
    """The stats table (queues, then totals, then the pause flag)."""
    rows = [("QUEUE", "READY", "PROCESSING", "DEAD", "PAUSED")]
    for q in ov.queues:
        dead = "?" if q.dead is None else str(q.dead)
        rows.append((q.name, str(q.ready), str(q.processing), dead, "yes" if q.paused else "no"))
    rows.append(("TOTAL", str(ov.total_ready), str(ov.total_processing), str(ov.dead), "yes" if ov.paused else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:4], widths[1:4], strict=True)]
        lines.append("  ".join([*cells, row[4].ljust(widths[4])]).rstrip())
    if ov.paused:
        lines.append("durable dequeue is paused (workerctl durable resume --apply)")
    return "\n".join(lines)


@durable.command(context_settings=CONTEXT)
@queue_option
@json_option
@click.option("--watch", type=DURATION, default="0", help="Redraw every DURATION (e.g. 2s) until Ctrl-C.")
@connection_options
def stats(queue: str, as_json: bool, watch: float, conn: Connection) -> None:
    """Print a table of ready, processing and dead tasks per queue.

    With --json, one JSON object per snapshot: {"queues": [{"name", "ready", "processing", "dead",
    "paused"}], "total_ready", "total_processing", "dead", "paused", "paused_queues"}.

    \b
    Example:
      workerctl durable stats --watch 2s
      workerctl durable stats --json | jq .total_ready
    """
    if watch < 0:
        raise click.BadParameter("must be >= 0", param_hint="'--watch'")
    names = [queue] if queue else []

    def show(ov: Overview, clear: bool) -> None:
        if as_json:
            emit_json(ov.to_json())
            return
        if clear:
            click.clear()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            click.echo(f"every {watch:g}s: workerctl durable stats   {stamp}   (Ctrl-C to stop)\n")
        click.echo(stats_table(ov))

    if watch <= 0:
        show(run_admin(conn, lambda admin: admin.overview(names)), clear=False)
        return

    async def loop() -> None:
        admin = conn.admin()
        try:
            while True:
                show(await admin.overview(names), clear=True)
                await asyncio.sleep(watch)
        finally:
            await admin.aclose()

    try:
        asyncio.run(loop())
    except KeyboardInterrupt:
        return
    except WorkerError as exc:
        raise fail(str(exc)) from None


@durable.command(context_settings=CONTEXT)
@json_option
@connection_options
def workers(as_json: bool, conn: Connection) -> None:
    """List the live worker nodes: id, host, pid, started, queues, queue weights, running leases, last heartbeat.

    A node heartbeats with its lease renewal (every third of its lease by default) and drops out once its
    last heartbeat is two leases old (at least 1 s): a killed node disappears by itself.

    \b
    Example:
      workerctl durable workers --json | jq length
    """
    nodes = run_admin(conn, lambda admin: admin.nodes())
    if as_json:
        emit_json([node.to_json() for node in nodes])
        return
    if not nodes:
        click.echo("no live worker nodes")
        return
    now = time.time() * 1000
    rows = [("ID", "HOST", "PID", "STARTED", "QUEUES", "WEIGHTS", "RUNNING", "SEEN")]
    for n in nodes:
        started = rfc3339(n.started_ms) if n.started_ms else "-"
        seen = f"{max(0.0, now - n.last_seen_ms) / 1000:.1f}s ago"
        weights = ",".join(f"{q}={w}" for q, w in sorted(n.weights.items())) or "-"
        rows.append((n.id, n.host, str(n.pid), started, ",".join(n.queues) or "all", weights, str(n.running), seen))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@durable.command(context_settings=CONTEXT)
@json_option
@connection_options
def paused(as_json: bool, conn: Connection) -> None:
    """Print whether durable dequeue is paused (and which queues are).

    \b
    Example:
      workerctl durable paused
    """
    state = run_admin(conn, lambda admin: admin.pause_state())
    if as_json:
        emit_json({"paused": state.paused, "paused_queues": list(state.paused_queues)})
        return
    click.echo(f"paused={'true' if state.paused else 'false'}")
    if state.paused_queues:
        click.echo("paused_queues=" + ",".join(state.paused_queues))


@durable.command(context_settings=CONTEXT)
@click.option("--id", "task_id", required=True, help="Task id.")
@click.option("--include-metadata", is_flag=True, help="Include the task's metadata.")
@json_option
@connection_options
def get(task_id: str, include_metadata: bool, as_json: bool, conn: Connection) -> None:
    """Print one task as JSON, with its status (ready, processing, dead or unknown).

    Without --json the object is go-worker's dump record; --json adds every field (timestamps in ms,
    last_error, payload_size, score, leased_by: the node holding a processing task) and the metadata.

    \b
    Example:
      workerctl durable get --id 3f0c0a4e-6d1e-4a8e-9a43-0c6b7c7d2f10 --json
    """
    record: TaskRecord = run_admin(conn, lambda admin: admin.get(task_id))
    emit_json(record.to_json() if as_json else record.to_dump(include_metadata=include_metadata))


@durable.command(context_settings=CONTEXT)
@queue_option
@click.option("--limit", default=100, show_default=True, help="Records per queue and status (0 = all).")
@click.option("--ready/--no-ready", default=True, show_default=True, help="Dump ready tasks.")
@click.option("--processing", is_flag=True, help="Dump leased tasks.")
@click.option("--dlq", is_flag=True, help="Dump dead-lettered tasks.")
@click.option("--include-metadata", is_flag=True, help="Include each task's metadata.")
@click.option("--handler", default="", help="Only tasks of this handler.")
@click.option("--min-retries", default=0, help="Only tasks configured with at least this many retries.")
@click.option("--max-retries", default=0, help="Only tasks configured with at most this many retries (0 = any).")
@click.option("--older-than", type=DURATION, default="0", help="Only tasks last updated at least this long ago.")
@click.option("--newer-than", type=DURATION, default="0", help="Only tasks last updated within this duration.")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Accepted for symmetry: dump is always JSON lines.")
@connection_options
def dump(
    queue: str,
    limit: int,
    ready: bool,
    processing: bool,
    dlq: bool,
    include_metadata: bool,
    handler: str,
    min_retries: int,
    max_retries: int,
    older_than: float,
    newer_than: float,
    as_json: bool,
    conn: Connection,
) -> None:
    """Print tasks as JSON lines: ready, then processing (queues sorted), then dead (newest first).

    Each line is go-worker's record {"id","status","handler","queue","priority","weight","retries",
    "attempts","ready_at","updated_at","metadata"}, empty keys omitted; payloads are never printed.

    \b
    Example:
      workerctl durable dump --dlq --no-ready --handler send_email --limit 0
    """
    if limit < 0:
        raise click.BadParameter("must be >= 0", param_hint="'--limit'")

    async def call(admin: RedisAdmin) -> int:
        n = 0
        records = admin.dump(
            queues=[queue] if queue else (),
            ready=ready,
            processing=processing,
            dlq=dlq,
            limit=limit,
            handler=handler,
            min_retries=min_retries,
            max_retries=max_retries,
            older_than=older_than,
            newer_than=newer_than,
        )
        async for record in records:
            emit_json(record.to_dump(include_metadata=include_metadata))
            n += 1
        return n

    run_redis_admin(conn, call)
