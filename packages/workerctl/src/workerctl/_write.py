"""Mutating commands (dry runs unless --apply): pause, resume, retry, requeue, delete, purge."""

from __future__ import annotations

from collections.abc import Sequence

import click
from worker_core.admin import DurableAdmin, MoveResult
from worker_core.errors import ConfigurationError
from worker_redis.admin import MAX_IDS, clean_ids

from ._connection import Connection, connection_options, fail, run_admin
from ._duration import DURATION
from ._groups import CONTEXT, durable

__all__ = ("delete", "pause", "purge", "requeue", "resume", "retry")

apply_option = click.option("--apply", is_flag=True, help="Make the change (without it: a dry run).")
ids_option = click.option("--id", "ids", multiple=True, help="Task id (repeatable; comma-separated values too).")
source_choice = click.Choice(["dlq", "ready", "processing"])


def _set_pause(conn: Connection, queue: str, apply: bool, pause: bool) -> None:
    verb = "pause" if pause else "resume"
    target = f"queue {queue}" if queue else "durable dequeue"
    if not apply:
        click.echo(f"dry-run: use --apply to {verb} {target}")
        return

    async def call(admin: DurableAdmin) -> None:
        if queue:
            await admin.pause_queue(queue, paused=pause)
        elif pause:
            await admin.pause()
        else:
            await admin.resume()

    run_admin(conn, call)
    click.echo(f"{target} {verb}d")


@durable.command(context_settings=CONTEXT)
@click.option("--queue", default="", help="Pause only this queue (default: every dequeue).")
@apply_option
@connection_options
def pause(queue: str, apply: bool, conn: Connection) -> None:
    """Pause durable dequeue, globally or for one queue; leased tasks finish normally.

    \b
    Example:
      workerctl durable pause --apply
      workerctl durable pause --queue emails --apply
    """
    _set_pause(conn, queue.strip(), apply, pause=True)


@durable.command(context_settings=CONTEXT)
@click.option("--queue", default="", help="Resume only this queue (default: the global pause).")
@apply_option
@connection_options
def resume(queue: str, apply: bool, conn: Connection) -> None:
    """Resume durable dequeue, globally or for one queue.

    \b
    Example:
      workerctl durable resume --apply
    """
    _set_pause(conn, queue.strip(), apply, pause=False)


def _ids_from_flags(ids: Sequence[str]) -> list[str]:
    try:
        return clean_ids(ids, max_ids=MAX_IDS)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--id'") from None


def _describe(n_ids: int, source: str | None, from_queue: str, limit: int, verb: str) -> str:
    if n_ids:
        return f"{n_ids} task(s)"
    where = "dlq" if source == "dlq" else f"{source}:{from_queue}"
    if verb == "requeue":
        return f"up to {limit} task(s)" if limit else "all matching tasks"
    return f"up to {limit} task(s) from {where}" if limit else f"all tasks from {where}"


def _check_source(ids: list[str], source: str | None, from_queue: str) -> None:
    if ids:
        return
    if not source:
        raise click.UsageError("source is required when --id is not set")
    if source != "dlq" and not from_queue.strip():
        raise click.UsageError("--from-queue is required for source ready/processing")


async def _resolve(admin: DurableAdmin, ids: list[str], source: str | None, from_queue: str, limit: int) -> list[str]:
    """The ids to act on: the given ones (all must exist, else nothing changes), or the source's first ones."""
    if ids:
        missing = await admin.missing_ids(ids)
        if missing:
            raise fail(f"task {missing[0]} not found" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return ids
    assert source is not None
    return await admin.ids_from(source, from_queue=from_queue, limit=limit)


def _requeue(
    conn: Connection,
    ids: list[str],
    source: str | None,
    from_queue: str,
    queue: str,
    limit: int,
    delay: float,
    reset_attempts: bool,
) -> MoveResult | None:
    async def call(admin: DurableAdmin) -> MoveResult | None:
        todo = await _resolve(admin, ids, source, from_queue, limit)
        if not todo:
            return None
        return await admin.requeue(todo, queue=queue, delay=delay, reset_attempts=reset_attempts)

    return run_admin(conn, call)


@durable.command(context_settings=CONTEXT)
@ids_option
@click.option("--queue", default="", help="Target queue (default: each task's own queue).")
@click.option("--from-queue", default="", help="Queue to take tasks from (source ready/processing).")
@click.option("--source", type=source_choice, default="dlq", show_default=True, help="Where to take tasks from.")
@click.option("--limit", default=100, show_default=True, help="Tasks to take from the source (0 = all).")
@click.option("--delay", type=DURATION, default="0", help="Make them ready after this delay (e.g. 30s).")
@click.option("--reset-attempts", is_flag=True, help="Give the tasks a fresh retry budget (attempts = 0).")
@apply_option
@connection_options
def retry(
    ids: tuple[str, ...],
    queue: str,
    from_queue: str,
    source: str,
    limit: int,
    delay: float,
    reset_attempts: bool,
    apply: bool,
    conn: Connection,
) -> None:
    """Make tasks ready again: given ids, or the first ones of the DLQ or of a ready/processing set.

    A task taken from processing gets a fresh lease token: the worker that held it can no longer ack it.

    \b
    Example:
      workerctl durable retry --id 3f0c0a4e-6d1e-4a8e-9a43-0c6b7c7d2f10 --apply
      workerctl durable retry --source processing --from-queue emails --limit 0 --apply
    """
    wanted = _ids_from_flags(ids)
    _check_source(wanted, source, from_queue)
    if limit < 0 or delay < 0:
        raise click.UsageError("--limit and --delay must be >= 0")
    if not apply:
        click.echo(f"dry-run: use --apply to requeue {_describe(len(wanted), source, from_queue, limit, 'requeue')}")
        return
    result = _requeue(conn, wanted, source, from_queue, queue, limit, delay, reset_attempts)
    click.echo("no tasks found to requeue" if result is None else f"requeued {result.count} task(s)")


@durable.command(context_settings=CONTEXT)
@click.option("--queue", required=True, help="Queue whose tasks to requeue.")
@click.option("--processing", is_flag=True, help="Take leased tasks (default: ready tasks).")
@click.option("--limit", default=100, show_default=True, help="Tasks to requeue (0 = all).")
@click.option("--delay", type=DURATION, default="0", help="Make them ready after this delay.")
@apply_option
@connection_options
def requeue(queue: str, processing: bool, limit: int, delay: float, apply: bool, conn: Connection) -> None:
    """Requeue the first tasks of a queue's ready (or processing) set, now or after --delay.

    \b
    Example:
      workerctl durable requeue --queue emails --processing --apply
    """
    source = "processing" if processing else "ready"
    if limit < 0 or delay < 0:
        raise click.UsageError("--limit and --delay must be >= 0")
    if not apply:
        click.echo(f"dry-run: use --apply to requeue from {source}")
        return
    result = _requeue(conn, [], source, queue, "", limit, delay, False)
    click.echo("no tasks found to requeue" if result is None else f"requeued {result.count} task(s)")


@durable.command(context_settings=CONTEXT)
@ids_option
@click.option("--queue", default="", help="Queue of the tasks (default: each task's own queue).")
@click.option("--source", type=source_choice, default=None, help="Where to take tasks from when no --id is given.")
@click.option("--from-queue", default="", help="Queue to take tasks from (source ready/processing).")
@click.option("--limit", default=0, show_default=True, help="Tasks to take from the source (0 = all).")
@click.option("--delete-hash", is_flag=True, help="Also delete the task hashes (payloads).")
@apply_option
@connection_options
def delete(
    ids: tuple[str, ...],
    queue: str,
    source: str | None,
    from_queue: str,
    limit: int,
    delete_hash: bool,
    apply: bool,
    conn: Connection,
) -> None:
    """Remove tasks from their queue and the DLQ (with --delete-hash, their data too).

    An id that does not exist is an error and nothing is changed (go-worker created a stub hash).

    \b
    Example:
      workerctl durable delete --id 3f0c0a4e-6d1e-4a8e-9a43-0c6b7c7d2f10 --delete-hash --apply
      workerctl durable delete --source dlq --limit 10 --apply
    """
    wanted = _ids_from_flags(ids)
    _check_source(wanted, source, from_queue)
    if limit < 0:
        raise click.UsageError("--limit must be >= 0")
    if not apply:
        click.echo(f"dry-run: use --apply to delete {_describe(len(wanted), source, from_queue, limit, 'delete')}")
        return

    async def call(admin: DurableAdmin) -> MoveResult | None:
        todo = await _resolve(admin, wanted, source, from_queue, limit)
        return await admin.delete(todo, queue=queue, delete_hash=delete_hash) if todo else None

    result = run_admin(conn, call)
    click.echo("no tasks found to delete" if result is None or not result.count else f"deleted {result.count} task(s)")


@durable.command(context_settings=CONTEXT)
@click.option("--queue", default="", help="Only this queue (default: every known queue).")
@click.option("--limit", default=0, show_default=True, help="Entries per queue and set (0 = all).")
@click.option("--ready", is_flag=True, help="Purge ready sets.")
@click.option("--processing", is_flag=True, help="Purge processing sets.")
@click.option("--dlq", is_flag=True, help="Purge the DLQ (newest first).")
@click.option("--delete-hash", is_flag=True, help="Also delete the purged tasks' hashes (default: kept, as go-worker).")
@apply_option
@connection_options
def purge(
    queue: str,
    limit: int,
    ready: bool,
    processing: bool,
    dlq: bool,
    delete_hash: bool,
    apply: bool,
    conn: Connection,
) -> None:
    """Drop entries from ready sets, processing sets and/or the DLQ.

    \b
    Example:
      workerctl durable purge --dlq --delete-hash --apply
      workerctl durable purge --queue emails --ready --limit 100 --apply
    """
    if not (ready or processing or dlq):
        raise click.UsageError("at least one of --ready, --processing, or --dlq is required")
    if limit < 0:
        raise click.UsageError("--limit must be >= 0")
    if not apply:
        click.echo("dry-run: use --apply to purge")
        return
    result = run_admin(
        conn,
        lambda admin: admin.purge(
            queues=[queue] if queue else (),
            ready=ready,
            processing=processing,
            dlq=dlq,
            limit=limit,
            delete_hash=delete_hash,
        ),
    )
    for name, n in result.ready.items():
        click.echo(f"purged ready queue={name} removed={n}")
    for name, n in result.processing.items():
        click.echo(f"purged processing queue={name} removed={n}")
    if result.dead is not None:
        click.echo(f"purged dlq removed={result.dead}")
