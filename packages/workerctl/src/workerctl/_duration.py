"""Go-style durations on the command line (``500ms``, ``2s``, ``1m30s``, ``1h``); a bare number is seconds."""

from __future__ import annotations

import re
from typing import Any

import click

__all__ = ("DURATION", "DurationType", "parse_duration")

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (Go's ``time.ParseDuration`` syntax, or a plain number of seconds)."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    if not value:
        raise ValueError("empty duration")
    try:
        return sign * float(value)
    except ValueError:
        pass
    pos, total = 0, 0.0
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 2s, 1m30s)")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


class DurationType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A click parameter holding seconds, written as a Go duration."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        """Parse ``value``; a bad one is click's usage error."""
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = DurationType()
