"""``workerctl durable enqueue``: build a durable task from flags and enqueue it with the real backend."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml
from worker_core.durable import DurableTask
from worker_core.errors import DurableTaskExistsError, WorkerError

from ._connection import Connection, connection_options, fail
from ._duration import DURATION
from ._groups import CONTEXT, durable

__all__ = ("enqueue", "read_payload")

_SOURCES = "--payload, --payload-file, --payload-b64, or --payload-b64-file"


def _read_file(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None


def read_payload(
    payload: str | None,
    payload_file: str | None,
    payload_b64: str | None,
    payload_b64_file: str | None,
    fmt: str | None,
) -> bytes:
    """The payload bytes from exactly one source; JSON is validated and kept byte for byte, YAML becomes JSON."""
    given = [x for x in (payload, payload_file, payload_b64, payload_b64_file) if x is not None]
    if len(given) != 1:
        raise click.UsageError(f"use exactly one of {_SOURCES}")
    if payload_b64 is not None or payload_b64_file is not None:
        if fmt:
            raise click.UsageError("payload format is not applicable with base64 payloads")
        text = payload_b64 if payload_b64 is not None else _read_file(str(payload_b64_file)).decode("ascii", "replace")
        compact = "".join(text.split())
        if not compact:
            raise fail("base64 payload is empty")
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise fail("payload is not valid base64 (standard alphabet, with padding)") from None
    if payload is not None:
        raw, kind = payload.encode("utf-8"), fmt or "json"
    else:
        name = str(payload_file)
        raw = _read_file(name)
        kind = fmt or ("yaml" if name.lower().endswith((".yaml", ".yml")) else "json")
    if kind == "yaml":
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise fail(f"payload is not valid YAML: {problem}") from None
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    try:
        json.loads(raw)
    except ValueError as exc:
        raise fail(f"payload is not valid JSON: {exc}") from None
    return raw


def _metadata(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise click.BadParameter("metadata must be key=value", param_hint="'--meta'")
        if not key.strip():
            raise click.BadParameter("metadata key is required", param_hint="'--meta'")
        out[key.strip()] = val.strip()
    return out


def _run_at(run_at: str | None, delay: float) -> datetime | None:
    if run_at and delay:
        raise click.UsageError("use only one of --run-at or --delay")
    if delay < 0:
        raise click.BadParameter("must be >= 0", param_hint="'--delay'")
    if delay:
        return datetime.now(UTC) + timedelta(seconds=delay)
    if not run_at:
        return None
    try:
        when = datetime.fromisoformat(run_at.strip())
    except ValueError:
        raise click.BadParameter("must be RFC3339, e.g. 2026-01-02T15:04:05Z", param_hint="'--run-at'") from None
    if when.tzinfo is None:
        raise click.BadParameter("needs a time zone (Z or +hh:mm)", param_hint="'--run-at'")
    return when


@durable.command(context_settings=CONTEXT)
@click.option("--id", "task_id", default=None, help="Task id (a UUID; default: a new one).")
@click.option("--handler", default=None, help="Durable handler name (required).")
@click.option("--queue", default="", help="Queue (default: --default-queue).")
@click.option("--payload", default=None, help="Inline payload (JSON, or YAML with --payload-format yaml).")
@click.option("--payload-file", default=None, help="Payload file ('-' = stdin); .yaml/.yml files are YAML.")
@click.option("--payload-b64", default=None, help="Base64 payload (e.g. a protobuf message).")
@click.option("--payload-b64-file", default=None, help="File holding a base64 payload ('-' = stdin).")
@click.option("--payload-format", type=click.Choice(["json", "yaml"]), default=None, help="Format of the payload.")
@click.option("--priority", default=1, show_default=True, help="Lower runs first.")
@click.option("--weight", default=0, show_default=True, help="Weight within the queue (<= 0: 1).")
@click.option("--retries", default=0, show_default=True, help="Retries after the first attempt.")
@click.option("--retry-delay", type=DURATION, default="0", help="Base retry delay (0: the worker's default).")
@click.option("--delay", type=DURATION, default="0", help="Run after this delay.")
@click.option("--run-at", default=None, help="Run at this RFC3339 time.")
@click.option("--meta", multiple=True, help="Metadata key=value (repeatable).")
@click.option("--apply", is_flag=True, help="Enqueue (without it: a dry run).")
@connection_options
def enqueue(
    task_id: str | None,
    handler: str | None,
    queue: str,
    payload: str | None,
    payload_file: str | None,
    payload_b64: str | None,
    payload_b64_file: str | None,
    payload_format: str | None,
    priority: int,
    weight: int,
    retries: int,
    retry_delay: float,
    delay: float,
    run_at: str | None,
    meta: tuple[str, ...],
    apply: bool,
    conn: Connection,
) -> None:
    """Enqueue one durable task, as a worker's register_durable_task would.

    JSON payloads are stored byte for byte; with the protobuf codec, pass the message with --payload-b64.

    \b
    Example:
      workerctl durable enqueue --handler send_email --payload '{"to":"a@example.com"}' --apply
      workerctl durable enqueue --handler resize --payload-b64 "$(base64 -w0 msg.bin)" --delay 30s --apply
    """
    if not (handler or "").strip():
        raise click.UsageError("handler is required")
    try:
        tid = uuid.UUID(task_id.strip()) if task_id else uuid.uuid4()
    except ValueError:
        raise click.BadParameter("must be a UUID", param_hint="'--id'") from None
    when = _run_at(run_at, delay)
    metadata = _metadata(meta)
    if retries < 0 or retry_delay < 0:
        raise click.UsageError("--retries and --retry-delay must be >= 0")
    data = read_payload(payload, payload_file, payload_b64, payload_b64_file, payload_format)
    if not apply:
        click.echo(f"dry-run: use --apply to enqueue task {tid}")
        return
    task = DurableTask(
        str(handler).strip(),
        payload=data,
        id=tid,
        priority=priority,
        queue=queue.strip() or conn.default_queue,
        weight=weight if weight > 0 else 1,
        run_at=when,
        retries=retries,
        retry_delay=retry_delay,
        metadata=metadata or None,
    )
    try:
        asyncio.run(_enqueue(conn, task))
    except DurableTaskExistsError:
        raise fail(f"durable task already exists: {tid}") from None
    except WorkerError as exc:
        raise fail(str(exc)) from None
    click.echo(f"enqueued durable task id={tid}")


async def _enqueue(conn: Connection, task: DurableTask) -> None:
    if conn.store_url is not None:  # another backend: built by its plugin from the URL, as a worker builds it
        from worker_core.plugins import Plugins

        scheme = conn.store_url.partition(":")[0].lower()
        store: Any = Plugins().backends().get(scheme)(conn.store_url)
        try:
            if hasattr(store, "connect"):
                await store.connect()
            await store.enqueue(task)
        finally:
            if hasattr(store, "aclose"):
                await store.aclose()
        return
    from worker_redis import RedisDurableBackend  # lazy: only enqueue needs the backend

    client = conn.client()
    try:
        backend = RedisDurableBackend(client, prefix=conn.prefix, default_queue=conn.default_queue, where=conn.where)
        await backend.enqueue(task)
    finally:
        await client.aclose()
