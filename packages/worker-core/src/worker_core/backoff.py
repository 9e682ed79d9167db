"""Capped exponential backoff with go-worker's deterministic jitter (spec §2.8 and §5.2).

The jitter is a pure function of the delay, the task id and the attempt number, so every node (and
go-worker itself) computes the same delay for the same retry. The arithmetic is done in integer
nanoseconds with Go's int64 wrap-around; the ``*_ns`` functions are exact, the float-second forms
round to the nearest nanosecond.
"""

from __future__ import annotations

import uuid

__all__ = (
    "MAX_BACKOFF",
    "durable_retry_delay",
    "durable_retry_delay_ns",
    "next_backoff",
    "retry_jitter",
    "retry_jitter_ns",
)

#: The cap on the exponential base (1 minute), applied before jitter.
MAX_BACKOFF = 60.0
_MAX_BACKOFF_NS = 60_000_000_000
_SECOND_NS = 1_000_000_000
_MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63
_MIN_INT64 = -(1 << 63)


def _wrap64(value: int) -> int:
    """Interpret the low 64 bits of ``value`` as a signed int64 (Go's overflow behaviour)."""
    value &= _MASK64
    return value - (1 << 64) if value & _SIGN64 else value


def retry_jitter_ns(delay_ns: int, task_id: uuid.UUID, attempt: int) -> int:
    """Jitter ``delay_ns`` by up to ±10 % (span = delay/5), deterministically for ``(task_id, attempt)``."""
    span = delay_ns // 5
    if span <= 0:
        return delay_ns
    raw = task_id.bytes
    left = int.from_bytes(raw[:8], "little", signed=True)
    right = int.from_bytes(raw[8:], "little", signed=True)
    x = _wrap64(left ^ right ^ attempt)
    x = _wrap64(x ^ (x << 13))
    x = _wrap64(x ^ (x >> 7))  # Python's >> on a negative int is arithmetic, as Go's on int64
    x = _wrap64(x ^ (x << 17))
    h = 0 if x == _MIN_INT64 else abs(x)
    if h == 0:
        return delay_ns
    return delay_ns + h % span - span // 2


def retry_jitter(delay_s: float, task_id: uuid.UUID, attempt: int) -> float:
    """:func:`retry_jitter_ns` in float seconds."""
    return retry_jitter_ns(round(delay_s * _SECOND_NS), task_id, attempt) / _SECOND_NS


def next_backoff(base_s: float) -> float:
    """The base for the next in-memory retry: twice ``base_s``, capped at :data:`MAX_BACKOFF`."""
    return min(base_s * 2, MAX_BACKOFF)


def durable_retry_delay_ns(base_ns: int, attempt: int, task_id: uuid.UUID) -> int:
    """Delay before delivery ``attempt + 1`` of a durable task: ``base * 2**(attempt-1)`` capped at 1 min, jittered."""
    delay = base_ns if base_ns > 0 else _SECOND_NS
    attempt = max(attempt, 1)
    for _ in range(attempt - 1):
        if delay * 2 > _MAX_BACKOFF_NS:
            delay = _MAX_BACKOFF_NS
            break
        delay *= 2
    return retry_jitter_ns(delay, task_id, attempt)


def durable_retry_delay(base_s: float, attempt: int, task_id: uuid.UUID) -> float:
    """:func:`durable_retry_delay_ns` in float seconds."""
    return durable_retry_delay_ns(round(base_s * _SECOND_NS), attempt, task_id) / _SECOND_NS
