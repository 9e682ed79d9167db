"""A worker process for fault tests, on any durable backend that opens from a URL through the backend plugins.

Run ``python -m worker_core.testing.fault_worker URL LOG [options]``; :class:`~worker_core.testing.faults.FaultFleet`
starts it for you. It runs one :class:`~worker_core.TaskManager` with a durable handler named ``work`` (JSON
payloads) and appends one line per event to ``LOG``, flushed at once, so a SIGKILL loses nothing already written:

``READY <pid> <epoch s>``
    the manager started (its backend is resolved and connected).
``S <task id> <attempt> <epoch s>`` / ``D <task id> <attempt> <epoch s>``
    the handler started / finished an attempt.
``K <task id> <attempt> <epoch s>``
    a task whose payload is ``"die"`` is about to SIGKILL its own process (an OOM kill, a segfault).
``A <lease id> ok|lost <epoch s>``
    an ack (``ack`` or ``ack_with_outcome``) was taken, or refused with ``LeaseLostError``.
``L <lease id> <epoch s>``
    a lease renewal found the lease lost.

A payload ``{"sleep": s}`` works ``s`` seconds, any other one ``--work-ms``. SIGTERM stops the manager gracefully.
Options: ``--lease S`` (default 1), ``--work-ms MS`` (20), ``--workers N`` (8), ``--poll S`` (0.05),
``--renewal default|S`` (absent: a quarter of the lease; ``default``: the manager's own), and ``--plugin MODULE``
(repeatable: register only these plugin modules instead of loading every installed one, which keeps the import
of unrelated plugins out of the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO

from worker_core import TaskContext, TaskManager
from worker_core.durable import DurableHandlerSpec, DurableTaskLease
from worker_core.errors import LeaseLostError
from worker_core.testing._nodes import open_backend, run_until_sigterm

__all__ = ("main", "parse_args", "run")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of the worker (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m worker_core.testing.fault_worker")
    parser.add_argument("url", help="durable backend URL (redis://, sqlite:///, postgresql://, memory:// ...)")
    parser.add_argument("log", help="the attempt log to append to")
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--renewal", default=None)
    parser.add_argument("--plugin", action="append", default=[])
    return parser.parse_args(argv)


def _log_settles(backend: Any, write: Callable[[str], None]) -> None:
    """Wrap the backend's ack and renewal methods on the instance so that each one logs its outcome."""

    def settle(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        @functools.wraps(method)
        async def logged(lease: DurableTaskLease, *args: Any) -> None:
            try:
                await method(lease, *args)
            except LeaseLostError:
                write(f"A {lease.lease_id} lost {time.time():.4f}")
                raise
            write(f"A {lease.lease_id} ok {time.time():.4f}")

        return logged

    for name in ("ack", "ack_with_outcome"):
        method = getattr(backend, name, None)
        if method is not None:
            setattr(backend, name, settle(method))
    extend_many = getattr(backend, "extend_many", None)
    if extend_many is not None:

        async def renew_many(leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
            held: list[bool] = await extend_many(leases, duration)
            for one, ok in zip(leases, held, strict=True):
                if not ok:
                    write(f"L {one.lease_id} {time.time():.4f}")
            return held

        backend.extend_many = renew_many
    extend = backend.extend

    async def renew(lease: DurableTaskLease, duration: float) -> None:
        try:
            await extend(lease, duration)
        except LeaseLostError:
            write(f"L {lease.lease_id} {time.time():.4f}")
            raise

    backend.extend = renew


async def run(args: argparse.Namespace, log: TextIO) -> None:
    """Run the worker until SIGTERM, logging to ``log``."""

    def write(line: str) -> None:
        log.write(line + "\n")
        log.flush()

    async def work(ctx: TaskContext, payload: object) -> None:
        if payload == "die":
            write(f"K {ctx.task_id} {ctx.attempt} {time.time():.4f}")
            os.kill(os.getpid(), signal.SIGKILL)
        write(f"S {ctx.task_id} {ctx.attempt} {time.time():.4f}")
        pause = args.work_ms / 1000
        if isinstance(payload, dict) and "sleep" in payload:
            pause = float(payload["sleep"])
        if pause:
            await asyncio.sleep(pause)
        write(f"D {ctx.task_id} {ctx.attempt} {time.time():.4f}")

    backend, plugins = open_backend(args.url, args.plugin)
    _log_settles(backend, write)
    renewing: dict[str, Any] = {"durable_lease_renewal_interval": args.lease / 4}  # a live, slow worker keeps leases
    if args.renewal == "default":
        renewing = {}
    elif args.renewal is not None:
        renewing["durable_lease_renewal_interval"] = float(args.renewal)
    tm = TaskManager(
        max_workers=args.workers,
        tasks_per_second=None,
        retry_delay=0.05,
        durable_backend=backend,
        durable_handlers={"work": DurableHandlerSpec(None, work)},
        durable_codec="json",
        durable_lease=args.lease,
        durable_poll_interval=args.poll,
        plugins=plugins,
        **renewing,
    )
    await run_until_sigterm(tm, backend, lambda: write(f"READY {os.getpid()} {time.time():.4f}"))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and run the worker."""
    args = parse_args(argv)
    with open(args.log, "a", encoding="utf-8") as out:
        asyncio.run(run(args, out))


if __name__ == "__main__":
    main()
