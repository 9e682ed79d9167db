"""The node's process options (``--processes``, recycling, health) and its configuration file (``--config``).

Every option of ``workerctl worker`` is read, first found wins, from its flag, its ``WORKER_*`` environment
variable, the TOML file given by ``--config`` (or ``$WORKER_CONFIG``), then its default. Click gives that order
itself: a flag beats its ``envvar``, which beats the context's ``default_map``, which the eager ``--config``
callback fills from the file before any other option is read.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ._duration import DURATION

__all__ = (
    "MEMORY",
    "PROCESSES",
    "ProcessOptions",
    "cpu_count",
    "load_config",
    "parse_memory",
    "process_options",
)

F = TypeVar("F", bound=Callable[..., Any])

_MEMORY = re.compile(r"(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_DECIMAL = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(text: str) -> int:
    """Bytes in ``text``: ``200MB`` (10**6), ``200MiB`` or ``200M`` (2**20), ``1GB``, or a plain number of bytes."""
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r} (use e.g. 200MB, 512MiB, 1G)")
    unit = match.group(2).lower()
    factor = _DECIMAL.get(unit) or _BINARY.get(unit)
    if factor is None:
        raise ValueError(f"invalid size unit in {text!r} (B, KB, MB, GB, KiB, MiB, GiB, K, M, G)")
    return int(float(match.group(1)) * factor)


class MemoryType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A click parameter holding a size in bytes (``200MB``)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Parse ``value``; a bad or zero size is click's usage error."""
        if isinstance(value, int):
            size = value
        else:
            try:
                size = parse_memory(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail("must be more than 0 bytes", param, ctx)
        return size


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ProcessesType(click.ParamType):  # type: ignore[type-arg]
    """``--processes``: an integer >= 1, or ``auto`` (the CPU count)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """``auto`` -> :func:`cpu_count`; otherwise an integer >= 1."""
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return cpu_count()
        else:
            try:
                number = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is neither an integer nor 'auto'", param, ctx)
        if number < 1:
            self.fail(f"{number} is not >= 1", param, ctx)
        return number


MEMORY = MemoryType()
PROCESSES = ProcessesType()


@dataclass(frozen=True, slots=True)
class ProcessOptions:
    """How the node runs its worker processes (the supervisor's settings)."""

    processes: int = 1
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None  # bytes of resident memory
    health_listen: str | None = None
    heartbeat_timeout: float = 10.0
    max_restarts: int = 5
    restart_window: float = 60.0
    check: bool = False

    @property
    def supervised(self) -> bool:
        """A supervisor runs: several processes, or a feature only the supervisor provides."""
        return (
            self.processes > 1
            or self.max_tasks_per_child is not None
            or self.max_memory_per_child is not None
            or self.health_listen is not None
        )


def load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The eager ``--config`` callback: the file's settings become the command's defaults (``default_map``)."""
    if not value or ctx.resilient_parsing:
        return value
    try:
        with open(value, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value}: {exc.strerror or exc}", ctx, param) from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{value} is not valid TOML: {exc}", ctx, param) from None
    table = data.get("worker", data)  # a [worker] table, or the settings at the top level
    if not isinstance(table, dict):
        raise click.BadParameter(f"{value}: [worker] must be a table", ctx, param)
    names: dict[str, str] = {}
    for p in ctx.command.params:
        if p.name == param.name:
            continue
        names[p.name.replace("_", "-")] = p.name
        for opt in p.opts:
            names[opt.lstrip("-")] = p.name
    defaults: dict[str, Any] = dict(ctx.default_map or {})
    for key, setting in table.items():
        name = names.get(str(key).replace("_", "-"))
        if name is None:
            raise click.BadParameter(f"{value}: unknown setting {key!r}", ctx, param)
        if isinstance(setting, bool | int | float):
            defaults[name] = setting
        elif isinstance(setting, list):
            defaults[name] = [str(item) for item in setting]
        else:
            defaults[name] = str(setting)
    ctx.default_map = defaults
    return value


def process_options(f: F) -> F:
    """Add the process options to a click command; it receives them as one ``process: ProcessOptions``."""
    options = [
        click.option(
            "--config",
            type=click.Path(dir_okay=False),
            envvar="WORKER_CONFIG",
            is_eager=True,
            expose_value=False,
            callback=load_config,
            help="TOML file of settings (flag > env > file > default) [env WORKER_CONFIG].",
        ),
        click.option(
            "--processes",
            type=PROCESSES,
            default="1",
            envvar="WORKER_PROCESSES",
            help="Worker processes (auto: one per CPU) [env WORKER_PROCESSES; default 1].",
        ),
        click.option(
            "--max-tasks-per-child",
            type=click.IntRange(min=1),
            default=None,
            envvar="WORKER_MAX_TASKS_PER_CHILD",
            help="Replace a worker process after this many tasks [env WORKER_MAX_TASKS_PER_CHILD].",
        ),
        click.option(
            "--max-memory-per-child",
            type=MEMORY,
            default=None,
            envvar="WORKER_MAX_MEMORY_PER_CHILD",
            help="Replace a worker process past this resident memory, e.g. 200MB [env WORKER_MAX_MEMORY_PER_CHILD].",
        ),
        click.option(
            "--health-listen",
            default=None,
            metavar="HOST:PORT",
            envvar="WORKER_HEALTH_LISTEN",
            help="Serve /livez, /readyz and /metrics over HTTP here [env WORKER_HEALTH_LISTEN].",
        ),
        click.option(
            "--heartbeat-timeout",
            type=DURATION,
            default="10s",
            envvar="WORKER_HEARTBEAT_TIMEOUT",
            help="A worker process silent this long is not live [env WORKER_HEARTBEAT_TIMEOUT; default 10s].",
        ),
        click.option(
            "--max-restarts",
            type=click.IntRange(min=0),
            default=5,
            envvar="WORKER_MAX_RESTARTS",
            help="Crashes within --restart-window that stop the node [env WORKER_MAX_RESTARTS; default 5].",
        ),
        click.option(
            "--restart-window",
            type=DURATION,
            default="60s",
            envvar="WORKER_RESTART_WINDOW",
            help="The window --max-restarts counts crashes in [env WORKER_RESTART_WINDOW; default 60s].",
        ),
        click.option(
            "--check",
            is_flag=True,
            envvar="WORKER_CHECK",
            help="Load the app, connect to its backend, report, exit 0 (or 1) [env WORKER_CHECK].",
        ),
    ]

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        process = ProcessOptions(
            processes=kwargs.pop("processes"),
            max_tasks_per_child=kwargs.pop("max_tasks_per_child"),
            max_memory_per_child=kwargs.pop("max_memory_per_child"),
            health_listen=kwargs.pop("health_listen") or None,
            heartbeat_timeout=kwargs.pop("heartbeat_timeout"),
            max_restarts=kwargs.pop("max_restarts"),
            restart_window=kwargs.pop("restart_window"),
            check=kwargs.pop("check"),
        )
        if process.heartbeat_timeout <= 0:
            raise click.BadParameter("must be more than 0", param_hint="'--heartbeat-timeout'")
        return f(*args, process=process, **kwargs)

    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]
