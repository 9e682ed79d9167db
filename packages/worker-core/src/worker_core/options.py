"""Validated settings: the one place durations, counts and moments given by users are checked.

Every constructor and setter of the package turns its arguments into plain values here, so that a bad value
fails at once with a :class:`~worker_core.errors.ConfigurationError` (or the caller's own error type) and the
runtime only ever sees floats in seconds, ints and epoch timestamps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeGuard, final

from .errors import ConfigurationError, InvalidTaskError

__all__ = (
    "DEFAULT_MAX_TASKS",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_QUEUE",
    "DEFAULT_STOP_TIMEOUT",
    "ManagerOptions",
    "config_int",
    "config_seconds",
    "delay_seconds",
    "epoch_seconds",
    "is_plain_int",
    "start_at",
    "to_seconds",
)

#: Tasks that run at once when ``max_workers`` is not given (arq and SAQ use the same default).
DEFAULT_MAX_WORKERS = 10
#: Tasks waiting to start (queued and delayed) before ``register_task`` raises ``QueueFullError``.
DEFAULT_MAX_TASKS = 100_000
#: The queue of tasks registered with ``queue=""`` when neither the manager nor its durable backend names one.
DEFAULT_QUEUE = "default"
#: Seconds a stop waits for cancelled attempts, threads and hooks before it gives up on them.
DEFAULT_STOP_TIMEOUT = 5.0


def is_plain_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def to_seconds(value: object, name: str, *, allow_zero: bool = False) -> float | None:
    """Normalise a duration given as seconds (int or float) or a ``timedelta``; ``None`` stays ``None``.

    Raises:
        TypeError: ``value`` is neither a number nor a ``timedelta``.
        ValueError: ``value`` is negative, not finite, or zero when ``allow_zero`` is false.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be seconds (float) or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return seconds


def config_seconds(value: object, name: str, *, allow_zero: bool = False) -> float | None:
    """:func:`to_seconds` raising :class:`ConfigurationError`."""
    try:
        return to_seconds(value, name, allow_zero=allow_zero)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


def config_int(value: object, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, or :class:`ConfigurationError`."""
    if not is_plain_int(value) or value < minimum:
        raise ConfigurationError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def delay_seconds(delay: object) -> float:
    """A ``register_*_after`` delay as seconds.

    Raises:
        InvalidTaskError: not seconds (a finite number) nor a ``timedelta``.
    """
    seconds: object = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise InvalidTaskError(f"delay must be seconds or a timedelta, got {delay!r}")
    return float(seconds)


def start_at(run_at: object = None, *, delay: object = None) -> datetime | None:
    """The ``run_at`` of a ``register_*_at`` (``run_at``) or ``register_*_after`` (``delay``) call.

    ``None`` for a delay ``<= 0`` (start now).

    Raises:
        InvalidTaskError: ``run_at`` is not a datetime, or ``delay`` is not seconds nor a ``timedelta``.
    """
    if delay is not None:
        seconds = delay_seconds(delay)
        return datetime.now(UTC) + timedelta(seconds=seconds) if seconds > 0 else None
    if not isinstance(run_at, datetime):
        raise InvalidTaskError(f"run_at must be a datetime, got {type(run_at).__name__}")
    return run_at


def epoch_seconds(moment: datetime) -> float:
    """Epoch seconds of ``moment``; a naive datetime is local time (as ``datetime.timestamp`` reads it)."""
    return moment.timestamp()


@final
@dataclass(frozen=True, slots=True)
class ManagerOptions:
    """The checked settings of one :class:`~worker_core.TaskManager` (see its docstring for each meaning)."""

    max_workers: int
    max_tasks: int
    tasks_per_second: float | None
    timeout_s: float | None
    retry_delay_s: float
    max_retries: int
    default_queue: str
    queue_weights: Mapping[str, int]
    stop_timeout_s: float
    plain_runner: str = "thread"  # "thread" or "process": where plain (non-async) task functions run
    # Whether default_queue / queue_weights were given (else a durable backend's own settings apply).
    default_queue_given: bool = False
    queue_weights_given: bool = False
    process_pool_size: int = 1  # pool processes when plain_runner is "process"

    @classmethod
    def build(
        cls,
        *,
        max_workers: object,
        max_tasks: object,
        tasks_per_second: object,
        timeout: object,
        retry_delay: object,
        max_retries: object,
        default_queue: object,
        queue_weights: object,
        stop_timeout: object,
        plain_runner: object = "thread",
        process_pool_size: object = None,
    ) -> ManagerOptions:
        """Check every value; the first bad one raises.

        Raises:
            ConfigurationError: a value of the wrong type or out of range.
        """
        workers = (os.cpu_count() or 1) if max_workers is None else config_int(max_workers, "max_workers", 1)
        tasks = config_int(max_tasks, "max_tasks", 1)
        if tasks_per_second is not None and (
            not isinstance(tasks_per_second, int | float)
            or isinstance(tasks_per_second, bool)
            or not math.isfinite(tasks_per_second)
        ):
            raise ConfigurationError(f"tasks_per_second must be a finite number or None, got {tasks_per_second!r}")
        tps = float(tasks_per_second) if tasks_per_second is not None and tasks_per_second > 0 else None
        retry_delay_s = config_seconds(retry_delay, "retry_delay")
        if retry_delay_s is None:
            raise ConfigurationError("retry_delay must be > 0")
        stop_timeout_s = config_seconds(stop_timeout, "stop_timeout", allow_zero=True)
        if stop_timeout_s is None:
            raise ConfigurationError("stop_timeout must be >= 0")
        default_queue_given = default_queue is not None
        if default_queue is None:
            default_queue = DEFAULT_QUEUE
        if not isinstance(default_queue, str) or not default_queue.strip():
            raise ConfigurationError("default_queue must be a non-empty str")
        weights: dict[str, int] = {}
        if queue_weights is not None and not isinstance(queue_weights, Mapping):
            raise ConfigurationError(f"queue_weights must be a mapping of str to int, got {queue_weights!r}")
        for name, weight in (queue_weights or {}).items():
            if not isinstance(name, str) or not is_plain_int(weight):
                raise ConfigurationError(f"queue_weights must map str to int, got {name!r}: {weight!r}")
            if name.strip():
                weights[name.strip()] = weight if weight > 0 else 1
        if plain_runner not in ("thread", "process"):
            raise ConfigurationError(f"plain_runner must be 'thread' or 'process', got {plain_runner!r}")
        pool_size = (
            (os.cpu_count() or 1)
            if process_pool_size is None
            else config_int(process_pool_size, "process_pool_size", 1)
        )
        return cls(
            max_workers=workers,
            max_tasks=tasks,
            tasks_per_second=tps,
            timeout_s=config_seconds(timeout, "timeout"),
            retry_delay_s=retry_delay_s,
            max_retries=config_int(max_retries, "max_retries", 0),
            default_queue=default_queue.strip(),
            queue_weights=weights,
            stop_timeout_s=stop_timeout_s,
            plain_runner=str(plain_runner),
            process_pool_size=pool_size,
            default_queue_given=default_queue_given,
            queue_weights_given=queue_weights is not None,
        )
