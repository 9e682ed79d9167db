"""``workerctl durable schedules list|events|pause|resume|trigger``: the schedule state every node shares.

It speaks worker-core's :class:`~worker_core.admin.ScheduleAdmin` through the store's admin (``conn.admin()``),
so it works on every backend whose admin has it: Redis (the default connection, or ``--url redis://``),
``--url sqlite:///...`` and ``--url postgresql://...``. The nodes and the CLI agree on the meaning of the state
because both go through the backend's own schedule methods. Pause, resume and trigger are dry runs unless
``--apply`` is given; they refuse a schedule no node published.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import click
from worker_core.admin import DurableAdmin, ScheduleAdmin

from ._connection import Connection, connection_options, fail, run_admin
from ._groups import CONTEXT, schedules

__all__ = ("schedules_events", "schedules_list", "schedules_pause", "schedules_resume", "schedules_trigger")

T = TypeVar("T")

_apply = click.option("--apply", is_flag=True, help="Make the change (without it: a dry run).")
_name = click.option("--name", required=True, help="Schedule name.")


def _run(conn: Connection, call: Callable[[ScheduleAdmin], Awaitable[T]]) -> T:
    """Run ``call`` with the store's admin (a CLI error if it keeps no schedules); worker errors become CLI errors."""

    async def go(admin: DurableAdmin) -> T:
        if not isinstance(admin, ScheduleAdmin):
            raise fail(f"this store ({type(admin).__name__}) keeps no durable schedules")
        return await call(admin)

    return run_admin(conn, go)


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


@schedules.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@connection_options
def schedules_list(as_json: bool, conn: Connection) -> None:
    """List the durable schedules nodes published: spec, zone, paused, last run and outcome, next run.

    \b
    Example:
      workerctl durable schedules list --json
    """
    rows = _run(conn, lambda admin: admin.schedules())
    if as_json:
        doc = [
            {**r.to_json(), "next_run_ms": r.next_run_ms or None, "last_run_ms": r.last_run_ms or None} for r in rows
        ]
        click.echo(json.dumps({"schedules": doc}, indent=2))
        return
    if not rows:
        click.echo("no durable schedules (a node publishes its schedules when it starts)")
        return
    table = [("NAME", "SPEC", "TZ", "PAUSED", "LAST RUN", "OUTCOME", "NEXT RUN")]
    for item in rows:
        paused = "yes" if item.paused else "no"
        last, outcome, next_run = _when(item.last_run_ms), item.last_outcome or "-", _when(item.next_run_ms)
        table.append((item.name, item.spec, item.tz, paused, last, outcome, next_run))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@schedules.command("events", context_settings=CONTEXT)
@_name
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Events to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@connection_options
def schedules_events(name: str, limit: int, as_json: bool, conn: Connection) -> None:
    """Show a schedule's latest events (enqueued, triggered, skipped, failed), newest first.

    \b
    Example:
      workerctl durable schedules events --name nightly-report
    """
    events = _run(conn, lambda admin: admin.schedule_events(name, limit))
    if as_json:
        click.echo(json.dumps({"events": [e.to_json() for e in events]}, indent=2))
        return
    if not events:
        click.echo(f"no events for schedule {name!r}")
        return
    for e in events:
        detail = e.task_id or e.error
        click.echo(f"{_when(e.at_ms)}  {e.kind:<9}  tick={_when(e.tick_ms)}  {detail}".rstrip())


def _set_paused(conn: Connection, name: str, paused: bool, apply: bool) -> None:
    verb = "pause" if paused else "resume"
    if not apply:
        click.echo(f"dry-run: use --apply to {verb} schedule {name!r} on every node")
        return
    _run(conn, lambda admin: admin.pause_schedule(name) if paused else admin.resume_schedule(name))
    click.echo(f"schedule {name!r} {verb}d")


@schedules.command("pause", context_settings=CONTEXT)
@_name
@_apply
@connection_options
def schedules_pause(name: str, apply: bool, conn: Connection) -> None:
    """Pause a schedule on every node: its ticks are skipped until resumed.

    \b
    Example:
      workerctl durable schedules pause --name nightly-report --apply
    """
    _set_paused(conn, name, True, apply)


@schedules.command("resume", context_settings=CONTEXT)
@_name
@_apply
@connection_options
def schedules_resume(name: str, apply: bool, conn: Connection) -> None:
    """Resume a paused schedule.

    \b
    Example:
      workerctl durable schedules resume --name nightly-report --apply
    """
    _set_paused(conn, name, False, apply)


@schedules.command("trigger", context_settings=CONTEXT)
@_name
@_apply
@connection_options
def schedules_trigger(name: str, apply: bool, conn: Connection) -> None:
    """Ask for one run of a schedule now; exactly one node that runs the schedule takes the request.

    \b
    Example:
      workerctl durable schedules trigger --name nightly-report --apply
    """
    if not apply:
        click.echo(f"dry-run: use --apply to trigger schedule {name!r}")
        return
    task_id = _run(conn, lambda admin: admin.run_schedule_now(name))
    if task_id:
        click.echo(f"schedule {name!r} ran now: task {task_id}")
    else:
        click.echo(f"run of schedule {name!r} requested (the next poll of a node that runs it takes it)")
