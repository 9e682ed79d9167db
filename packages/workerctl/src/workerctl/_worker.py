"""``workerctl worker APP``: run a worker node (durable consumer, optional gRPC server) until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import click
from worker_core.errors import WorkerError

from ._child import RECYCLE_EXIT, ChildLink
from ._connection import fail
from ._duration import DURATION
from ._groups import CONTEXT, cli
from ._node_config import ProcessOptions, process_options
from ._worker_grpc import GrpcOptions, grpc_options, start_grpc

__all__ = ("WorkerOptions", "load_app", "worker")

logger = logging.getLogger("workerctl.worker")

_STOP_NOW_EXIT = 130  # the conventional "interrupted" code: a second signal cancelled running tasks


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What the command line asks of the node (``None``: leave the app's own setting)."""

    app: str
    durable_url: str | None
    prefix: str | None
    concurrency: int | None
    default_queue: str | None
    queue_weights: dict[str, int] | None
    shutdown_timeout: float
    grpc: GrpcOptions
    rate: float | None = None  # tasks/s; 0: no limit; None: not given (no limit for a factory that takes it)
    consume: tuple[str, ...] = ()  # lease only from these queues (empty: every queue)
    lease: float | None = None
    renewal: float | None = None  # 0: off
    plain_runner: str | None = None  # "thread" or "process": where the app's plain handlers run


def _import_attr(spec: str, what: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r} is not module:attribute", param_hint=what)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the app usually lives in the current directory
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raised while importing
        raise fail(f"cannot import {module_name!r} for {spec}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise fail(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _backend(opts: WorkerOptions) -> Any:
    """The durable backend for ``--redis-url``: the URL itself, or a backend object when a prefix or queues are set."""
    if opts.durable_url is None or (opts.prefix is None and not opts.consume):
        return opts.durable_url
    from worker_redis import RedisDurableBackend

    options: dict[str, Any] = {}
    if opts.prefix is not None:
        options["prefix"] = opts.prefix
    if opts.consume:
        options["queues"] = list(opts.consume)
    try:
        return RedisDurableBackend.from_url(opts.durable_url, **options)
    except WorkerError as exc:
        raise fail(f"--redis-url: {exc}") from None


async def load_app(opts: WorkerOptions) -> Any:
    """Resolve APP to a TaskManager: the object itself, or what its factory returns (sync or async).

    A factory receives, by keyword, those of ``durable_backend``, ``max_workers``, ``default_queue``,
    ``queue_weights``, ``tasks_per_second``, ``durable_lease``, ``durable_lease_renewal_interval`` and
    ``plain_runner`` that the
    command line set and its signature declares (``tasks_per_second=None``, no limit, when ``--rate`` is not
    given and the factory takes it).
    """
    from worker_core import TaskManager

    obj = _import_attr(opts.app, "'APP'")
    if opts.consume and opts.durable_url is None:
        raise click.UsageError("--consume needs --redis-url (the node's backend is built here to lease only those)")
    given: dict[str, Any] = {}
    optional: dict[str, Any] = {}  # passed only to a factory that declares it
    if opts.rate is not None:
        given["tasks_per_second"] = opts.rate or None
    else:
        optional["tasks_per_second"] = None
    if opts.lease is not None:
        given["durable_lease"] = opts.lease
    if opts.renewal is not None:
        given["durable_lease_renewal_interval"] = opts.renewal
    if opts.plain_runner is not None:
        given["plain_runner"] = opts.plain_runner
    if opts.durable_url is not None:
        given["durable_backend"] = _backend(opts)
    if opts.concurrency is not None:
        given["max_workers"] = opts.concurrency
    if opts.default_queue is not None:
        given["default_queue"] = opts.default_queue
    if opts.queue_weights is not None:
        given["queue_weights"] = opts.queue_weights
    if isinstance(obj, TaskManager):
        unusable = sorted(set(given) - {"max_workers"})
        if unusable:
            raise fail(f"{opts.app} is a TaskManager instance; {', '.join(unusable)} need a factory function")
        if opts.concurrency is not None:
            obj.set_max_workers(opts.concurrency)
        return obj
    if not callable(obj):
        raise fail(f"{opts.app} is neither a TaskManager nor a factory returning one")
    try:
        params: dict[str, inspect.Parameter] = dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        params = {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    rejected = [k for k in given if not takes_all and k not in params]
    if rejected:
        raise fail(f"the factory {opts.app} does not accept {', '.join(rejected)}")
    given.update({k: v for k, v in optional.items() if takes_all or k in params})
    manager = obj(**given)
    if inspect.isawaitable(manager):
        manager = await manager
    if not isinstance(manager, TaskManager):
        raise fail(f"{opts.app} returned {type(manager).__name__}, not a TaskManager")
    return manager


def _describe_durable(opts: WorkerOptions) -> str:
    if not opts.durable_url:
        return "from the app"
    from urllib.parse import urlsplit

    parts = urlsplit(opts.durable_url)
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{port} prefix={opts.prefix or 'go-worker'}"


async def run_node(opts: WorkerOptions, link: ChildLink | None = None) -> int:
    """Start the app, serve until SIGTERM/SIGINT, stop gracefully; a second signal stops at once.

    Under the supervisor, ``link`` heartbeats to it and may stop the node to recycle it (exit
    :data:`~workerctl._child.RECYCLE_EXIT` once the stop was graceful).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_now = asyncio.Event()

    signals = 0  # a stop the node began itself (a recycle) is not a first signal

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        (stop_now if signals > 1 else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if link is not None:
        link.start(stop)
    try:
        return await _serve(opts, link, stop, stop_now)
    finally:
        if link is not None:
            await link.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve(opts: WorkerOptions, link: ChildLink | None, stop: asyncio.Event, stop_now: asyncio.Event) -> int:
    manager = await load_app(opts)
    if not manager.durable and not opts.grpc.listen:
        raise fail(
            f"{opts.app} has no durable backend, so this node would consume nothing: give --redis-url (and "
            "durable handlers in the app), configure durable_backend in the app, or serve gRPC with --grpc-listen"
        )
    await manager.start()
    if link is not None:
        link.attach(manager)
    server = None
    grpc_text = "off"
    try:
        if opts.grpc.listen:
            server, grpc_text = await start_grpc(opts.grpc, opts.app, manager, _import_attr)
        weights = ",".join(f"{q}={w}" for q, w in (opts.queue_weights or {}).items()) or "all"
        logger.info(
            "worker started: app=%s pid=%d concurrency=%d durable=%s queues=%s consume=%s grpc=%s",
            opts.app,
            os.getpid(),
            manager.max_workers,
            _describe_durable(opts),
            weights,
            ",".join(opts.consume) or "all",
            grpc_text,
        )
        await stop.wait()
        logger.info("stopping gracefully (send the signal again to stop now)")
        if server is not None:
            await server.stop(1.0)
        graceful = asyncio.create_task(manager.stop_graceful(opts.shutdown_timeout or None))
        forced = asyncio.create_task(stop_now.wait())
        await asyncio.wait({graceful, forced}, return_when=asyncio.FIRST_COMPLETED)
        if graceful.done():
            forced.cancel()
            try:
                graceful.result()
            except TimeoutError:
                logger.warning("shutdown timeout passed: running tasks were cancelled")
                return 1
            logger.info("worker stopped")
            return RECYCLE_EXIT if link is not None and link.recycled else 0
        logger.warning("stopping now: running tasks are cancelled (their leases expire and they run again)")
        await manager.stop_now()
        graceful.cancel()
        with contextlib.suppress(asyncio.CancelledError, WorkerError):
            await graceful
        return _STOP_NOW_EXIT
    finally:
        if server is not None:
            await server.stop(0)
        await manager.stop_now()


async def check_node(opts: WorkerOptions) -> int:
    """``--check``: load the app, start its manager (which connects to the backend), stop it; 0 when all worked."""
    manager = await load_app(opts)
    if not manager.durable and not opts.grpc.listen:
        raise fail(f"{opts.app} has no durable backend, so a node would consume nothing")
    await manager.start()
    try:
        click.echo(f"ok: app={opts.app} durable={_describe_durable(opts) if manager.durable else 'off'}")
    finally:
        await manager.stop_now()
    return 0


def _weights(values: tuple[str, ...]) -> dict[str, int] | None:
    if not values:
        return None
    out: dict[str, int] = {}
    for value in values:
        name, sep, weight = value.partition("=")
        if not name.strip():
            raise click.BadParameter(f"{value!r}: queue name is empty", param_hint="'--queue'")
        if sep and (not weight.strip().isdigit() or int(weight) < 1):
            raise click.BadParameter(f"{value!r}: weight must be an integer >= 1", param_hint="'--queue'")
        out[name.strip()] = int(weight) if sep else 1
    return out


@cli.command(context_settings=CONTEXT)
@click.argument("app", envvar="WORKER_APP", required=False)
@click.option(
    "--redis-url",
    "--durable-url",
    "durable_url",
    envvar="WORKER_REDIS_URL",
    help="Durable backend URL (redis://, rediss://) [env WORKER_REDIS_URL]",
)
@click.option("--redis-prefix", envvar="WORKER_REDIS_PREFIX", default=None, help="Key prefix [env WORKER_REDIS_PREFIX]")
@click.option(
    "-c", "--concurrency", type=click.IntRange(min=1), envvar="WORKER_CONCURRENCY", help="Tasks at once per process."
)
@click.option("--queue", "queues", multiple=True, envvar="WORKER_QUEUE", help="Queue weight NAME[=WEIGHT] (repeat).")
@click.option("--default-queue", envvar="WORKER_DEFAULT_QUEUE", help="Queue of tasks that name none.")
@grpc_options
@click.option(
    "--shutdown-timeout",
    type=DURATION,
    default="0",
    envvar="WORKER_SHUTDOWN_TIMEOUT",
    help="Graceful stop limit (0 = wait for tasks).",
)
@click.option(
    "--rate", type=click.FloatRange(min=0), envvar="WORKER_RATE", help="Tasks started per second (0/unset: no limit)."
)
@click.option("--consume", multiple=True, metavar="QUEUE", envvar="WORKER_CONSUME", help="Lease only from this queue.")
@click.option("--lease", type=DURATION, envvar="WORKER_LEASE", help="Durable lease per task [default: the app's, 30s].")
@click.option("--renewal", type=DURATION, envvar="WORKER_RENEWAL", help="Lease renewal interval (0 = off).")
@click.option(
    "--plain-runner",
    type=click.Choice(["thread", "process"]),
    envvar="WORKER_PLAIN_RUNNER",
    help="Run plain handlers on threads or in a process pool (the factory's plain_runner).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="WORKER_LOG_LEVEL",
    help="Log level.",
)
@process_options
def worker(
    app: str | None,
    durable_url: str | None,
    redis_prefix: str | None,
    concurrency: int | None,
    queues: tuple[str, ...],
    default_queue: str | None,
    shutdown_timeout: float,
    rate: float | None,
    consume: tuple[str, ...],
    lease: float | None,
    renewal: float | None,
    plain_runner: str | None,
    log_level: str,
    grpc: GrpcOptions,
    process: ProcessOptions,
) -> None:
    """Run a worker node for APP (module:attribute naming a TaskManager, or a factory returning one).

    A factory receives, by keyword, the settings given here that it declares: durable_backend,
    max_workers, default_queue, queue_weights, tasks_per_second (--rate; no limit unless given),
    durable_lease, durable_lease_renewal_interval, plain_runner. An app with no durable backend (and no
    --grpc-listen) is refused. SIGTERM or SIGINT stops the node gracefully (running tasks finish); a second
    signal stops it at once.

    --processes N (or auto) runs a supervisor of N worker processes, each a whole node; it restarts one
    that dies, replaces one past --max-tasks-per-child or --max-memory-per-child, and serves /livez,
    /readyz and /metrics on --health-listen. Every flag has a WORKER_* variable; --config FILE (TOML)
    holds defaults: flag > variable > file > default. --check loads the app, connects, and exits 0 or 1.

    gRPC on an address other than loopback needs a bearer token (--grpc-token-file, --grpc-token or
    $WORKER_GRPC_TOKEN) or mutual TLS, unless --insecure is given.

    \b
    Example:
      workerctl worker myapp.tasks:create_manager --redis-url redis://localhost:6379/0 \\
          -c 16 --queue emails=3 --queue default --grpc-listen 0.0.0.0:50052 \\
          --grpc-token-file /etc/worker/grpc-tokens \\
          --grpc-tls-cert server.pem --grpc-tls-key server-key.pem
    """
    if not app:
        raise click.UsageError("Missing argument 'APP' (or $WORKER_APP, or app = ... in --config).")
    if grpc.listen and process.supervised:
        raise click.UsageError(
            "--grpc-listen runs in a single-process node only: drop --processes/--max-*-per-child/--health-listen, "
            "or serve gRPC from a node of its own"
        )
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if durable_url is not None and not durable_url.startswith(("redis://", "rediss://")):
        raise click.BadParameter("must start with redis:// or rediss://", param_hint="'--redis-url'")
    opts = WorkerOptions(
        app=app,
        durable_url=durable_url,
        prefix=redis_prefix,
        concurrency=concurrency,
        default_queue=default_queue,
        queue_weights=_weights(queues),
        shutdown_timeout=shutdown_timeout,
        grpc=grpc,
        rate=rate,
        consume=tuple(q.strip() for q in consume if q.strip()),
        lease=lease if lease else None,
        renewal=renewal,
        plain_runner=plain_runner,
    )
    try:
        if process.check:
            code = asyncio.run(check_node(opts))
        elif process.supervised:
            from ._supervisor import NodeSupervisor

            code = asyncio.run(NodeSupervisor(opts, process, log_level).run())
        else:
            code = asyncio.run(run_node(opts))
    except WorkerError as exc:
        raise fail(str(exc)) from None
    sys.exit(code)
