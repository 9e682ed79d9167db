"""Schedule specs: cron expressions (5 fields, or 6 with seconds first), descriptors and intervals.

Cron expressions are parsed and evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ (why that library:
worker-core's README, "Schedules"). What this module adds is only go-worker's spelling on top of it:

- ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly``: the five-field
  expressions robfig/cron documents for them;
- ``@every <duration>`` (Go duration syntax, ``1m30s``) and a :class:`~datetime.timedelta`: a fixed interval.

Ticks are instants in epoch milliseconds. An interval's ticks are the multiples of the interval since the Unix
epoch, so every node computes the same ticks whatever its start time (go-worker counts ``@every`` from its
start; a shared schedule needs ticks that agree across nodes). A cron expression is evaluated in the schedule's
time zone, with cronsim's (Debian cron's) rules on DST changes: a time skipped by a spring-forward runs once, right
after the change; a time repeated by a fall-back runs once, at its first occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from worker_core.errors import ScheduleSpecError

__all__ = ("MIN_INTERVAL", "Spec", "parse_spec", "resolve_tz")

#: The shortest interval a schedule may have (ticks are whole milliseconds, markers are kept per tick).
MIN_INTERVAL: Final = timedelta(seconds=1)

_DESCRIPTORS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_GO_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def resolve_tz(tz: str | tzinfo | None, default: tzinfo = UTC) -> tzinfo:
    """``tz`` as a ``tzinfo``: a ``zoneinfo`` key (``"Europe/Berlin"``), a ``tzinfo``, or ``default`` for ``None``.

    Raises:
        ScheduleSpecError: an unknown zone key, or a value of another type.
    """
    if tz is None:
        return default
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str):
        if tz.upper() == "UTC":
            return UTC
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ScheduleSpecError(f"unknown time zone {tz!r}") from exc
    raise ScheduleSpecError(f"time zone must be a zoneinfo key or a tzinfo, got {type(tz).__name__}")


def _go_duration(text: str) -> float:
    pos = 0
    total = 0.0
    body = text.strip()
    if not body:
        raise ScheduleSpecError("@every needs a duration such as 30s, 5m or 1h30m")
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None:
            raise ScheduleSpecError(f"bad duration {text.strip()!r} (use Go's form: 30s, 5m, 1h30m)")
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total


def _go_format(seconds: float) -> str:
    """``seconds`` in Go's duration form (``1h30m``, ``1.5s``): the text of a ``timedelta`` spec, parseable again."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frac = seconds - whole
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if secs or frac or not out:
        out += f"{secs + frac:g}s" if frac else f"{secs}s"
    return out


@dataclass(frozen=True, slots=True)
class Spec:
    """A parsed schedule spec: what was given (``text``), and either a cron expression or an interval.

    ``expr`` is the expression handed to cronsim (a descriptor replaced by its five fields); ``interval_ms`` is
    set instead for ``@every`` and ``timedelta`` specs. ``tz`` is where a cron expression is evaluated.
    """

    text: str
    tz: tzinfo
    expr: str | None = None
    interval_ms: int | None = None

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms`` (epoch ms).

        Raises:
            ScheduleSpecError: the expression has no tick within cronsim's 50-year horizon.
        """
        interval = self.interval_ms
        if interval is not None:
            return (after_ms // interval + 1) * interval
        assert self.expr is not None
        start = datetime.fromtimestamp(after_ms // 1000, self.tz)  # cronsim ticks after this whole second
        try:
            return int(next(CronSim(self.expr, start)).timestamp()) * 1000
        except StopIteration:
            raise ScheduleSpecError(f"schedule {self.text!r} has no future tick") from None

    def last_at_or_before(self, at_ms: int) -> int | None:
        """The latest tick at or before ``at_ms``, or ``None`` when there is none in cronsim's horizon."""
        interval = self.interval_ms
        if interval is not None:
            return (at_ms // interval) * interval
        assert self.expr is not None
        start = datetime.fromtimestamp(at_ms // 1000 + 1, self.tz)
        try:
            return int(next(CronSim(self.expr, start, reverse=True)).timestamp()) * 1000
        except StopIteration:
            return None

    def upcoming(self, after_ms: int, count: int) -> list[int]:
        """The next ``count`` ticks after ``after_ms``."""
        out: list[int] = []
        at = after_ms
        for _ in range(count):
            at = self.next_after(at)
            out.append(at)
        return out

    def period_ms(self, around_ms: int) -> int:
        """The gap between the next two ticks after ``around_ms`` (the interval itself for intervals)."""
        if self.interval_ms is not None:
            return self.interval_ms
        first = self.next_after(around_ms)
        return self.next_after(first) - first


def parse_spec(spec: str | timedelta, tz: str | tzinfo | None = None) -> Spec:
    """Parse ``spec`` evaluated in ``tz`` (default UTC).

    ``spec`` is a cron expression (``"*/5 * * * *"``; six fields put seconds first: ``"*/10 * * * * *"``), a
    descriptor (``"@hourly"``, ``"@daily"``, ...), ``"@every 1m30s"``, or a :class:`~datetime.timedelta`.

    Raises:
        ScheduleSpecError: a bad expression, an interval below :data:`MIN_INTERVAL` or not a whole number of
            milliseconds, an unknown time zone.
    """
    zone = resolve_tz(tz)
    if isinstance(spec, timedelta):
        return _interval(f"@every {_go_format(spec.total_seconds())}", spec.total_seconds(), zone)
    if not isinstance(spec, str):
        raise ScheduleSpecError(f"a schedule spec is a str or a timedelta, got {type(spec).__name__}")
    text = " ".join(spec.split())
    lowered = text.lower()
    if lowered.startswith("@every"):
        return _interval(text, _go_duration(text[len("@every") :]), zone)
    expr = _DESCRIPTORS.get(lowered)
    if expr is None:
        if text.startswith("@"):
            raise ScheduleSpecError(f"unknown descriptor {text!r} (known: {', '.join(_DESCRIPTORS)}, @every <d>)")
        if len(text.split()) not in (5, 6):
            raise ScheduleSpecError(f"cron spec {text!r} needs 5 fields, or 6 with seconds first")
        expr = text
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise ScheduleSpecError(f"bad cron spec {text!r}: {exc}") from exc
    return Spec(text, zone, expr=expr)


def _interval(text: str, seconds: float, zone: tzinfo) -> Spec:
    ms = round(seconds * 1000)
    if seconds < MIN_INTERVAL.total_seconds():
        raise ScheduleSpecError(f"interval {text!r} is shorter than {MIN_INTERVAL.total_seconds():g}s")
    if abs(ms - seconds * 1000) > 1e-6:
        raise ScheduleSpecError(f"interval {text!r} is not a whole number of milliseconds")
    return Spec(text, zone, interval_ms=ms)
