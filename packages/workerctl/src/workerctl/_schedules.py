"""``workerctl durable schedules list|events|pause|resume|trigger``: the schedule state every node shares.

It reads and writes the keys the Redis backend keeps for durable schedules (``P:schedules``,
``P:schedule:paused``, ``P:schedule:runs``, ``P:admin:schedule_events:<name>``) through the backend's own
methods, so the CLI and the nodes agree on their meaning. Pause, resume and trigger are dry runs unless
``--apply`` is given.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import click
from worker_core.errors import WorkerError
from worker_core.schedules import parse_spec
from worker_redis import RedisDurableBackend

from ._connection import Connection, connection_options, fail
from ._groups import CONTEXT, schedules

__all__ = ("schedules_events", "schedules_list", "schedules_pause", "schedules_resume", "schedules_trigger")

T = TypeVar("T")

_apply = click.option("--apply", is_flag=True, help="Make the change (without it: a dry run).")
_name = click.option("--name", required=True, help="Schedule name.")


def _run(conn: Connection, call: Callable[[RedisDurableBackend], Awaitable[T]]) -> T:
    """Run ``call`` with a backend on a fresh client in a new event loop; worker errors become CLI errors."""

    async def main() -> T:
        client = conn.client()
        backend = RedisDurableBackend(client, prefix=conn.prefix, default_queue=conn.default_queue, where=conn.where)
        try:
            return await call(backend)
        finally:
            await backend.aclose()
            await client.aclose()

    try:
        return asyncio.run(main())
    except WorkerError as exc:
        raise fail(str(exc)) from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="seconds")


def _next_run(spec: str, tz: str) -> int | None:
    try:
        return parse_spec(spec, tz).next_after(int(time.time() * 1000))
    except WorkerError:
        return None


@schedules.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@connection_options
def schedules_list(as_json: bool, conn: Connection) -> None:
    """List the durable schedules nodes published: spec, zone, paused, last run and outcome, next run.

    \b
    Example:
      workerctl durable schedules list --json
    """

    async def read(backend: RedisDurableBackend) -> list[dict[str, object]]:
        records = await backend.list_schedules()
        states = await backend.schedule_states([r.name for r in records])
        rows: list[dict[str, object]] = []
        for record in records:
            state = states[record.name]
            last = state.last_event
            rows.append(
                {
                    **record.to_json(),
                    "paused": state.paused,
                    "last_tick_ms": state.last_tick_ms,
                    "last_event": None if last is None else last.to_json(),
                    "next_run_ms": _next_run(record.spec, record.tz),
                }
            )
        return rows

    rows = _run(conn, read)
    if as_json:
        click.echo(json.dumps({"schedules": rows}, indent=2))
        return
    if not rows:
        click.echo("no durable schedules (a node publishes its schedules when it starts)")
        return
    table = [("NAME", "SPEC", "TZ", "PAUSED", "LAST RUN", "OUTCOME", "NEXT RUN")]
    for row in rows:
        last = row["last_event"]
        outcome = str(last["kind"]) if isinstance(last, dict) else "-"
        at = int(last["at_ms"]) if isinstance(last, dict) else None
        next_ms = row["next_run_ms"]
        table.append(
            (
                str(row["name"]),
                str(row["spec"]),
                str(row["tz"]),
                "yes" if row["paused"] else "no",
                _when(at),
                outcome,
                _when(next_ms if isinstance(next_ms, int) else None),
            )
        )
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
    events = _run(conn, lambda backend: backend.schedule_events(name, limit))
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
    _run(conn, lambda backend: backend.set_schedule_paused(name, paused))
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
    _run(conn, lambda backend: backend.request_schedule_run(name))
    click.echo(f"run of schedule {name!r} requested (the next poll of a node that runs it takes it)")
