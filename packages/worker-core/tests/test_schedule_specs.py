"""Schedule specs: a table of expressions with their known next times, DST changes in Europe/Berlin included.

The table was written first, to compare the two candidate libraries (README, "Schedules"); ``croniter`` is the
answer croniter 7.0.0 gives where it differs from the correct one (cronsim 2.8 matched every row):

- fall-back (2026-10-25, 03:00 CEST -> 02:00 CET): a daily ``30 2 * * *`` runs once with cronsim (Debian cron's
  rule), twice with croniter (02:30 CEST and again 02:30 CET);
- six fields: go-worker (robfig/cron) and cronsim read the first as seconds, croniter the last, so
  ``*/15 * * * * *`` is every 15 s for go-worker and cronsim, every second for croniter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from worker_core import ScheduleSpecError
from worker_core.schedules import parse_spec

BERLIN = "Europe/Berlin"

# spec, zone, start (ISO, in the zone), the next ticks (ISO with offset), croniter's answer where it differs
TABLE: list[tuple[str | timedelta, str, str, list[str], str]] = [
    ("*/5 * * * *", "UTC", "2026-01-01T12:02:00", ["2026-01-01T12:05:00+00:00", "2026-01-01T12:10:00+00:00"], ""),
    ("0 0 * * MON", "UTC", "2026-01-01T12:00:00", ["2026-01-05T00:00:00+00:00", "2026-01-12T00:00:00+00:00"], ""),
    ("*/1 * * * * *", "UTC", "2026-01-01T12:00:00", ["2026-01-01T12:00:01+00:00", "2026-01-01T12:00:02+00:00"], ""),
    ("30 */15 * * * *", "UTC", "2026-01-01T12:00:00", ["2026-01-01T12:00:30+00:00", "2026-01-01T12:15:30+00:00"], ""),
    ("@hourly", "UTC", "2026-01-01T00:30:00", ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00"], ""),
    ("@daily", BERLIN, "2026-01-01T00:30:00", ["2026-01-02T00:00:00+01:00", "2026-01-03T00:00:00+01:00"], ""),
    ("@weekly", "UTC", "2026-01-01T00:00:00", ["2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"], ""),
    ("@monthly", "UTC", "2026-01-15T00:00:00", ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00"], ""),
    ("@yearly", "UTC", "2026-06-01T00:00:00", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"], ""),
    ("@every 1m30s", "UTC", "2026-01-01T12:00:10", ["2026-01-01T12:01:30+00:00", "2026-01-01T12:03:00+00:00"], ""),
    (timedelta(hours=1), BERLIN, "2026-03-29T01:10:00", ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"], ""),
    # Europe/Berlin spring-forward, 2026-03-29: 02:00 CET -> 03:00 CEST (02:xx does not exist)
    ("30 2 * * *", BERLIN, "2026-03-28T12:00:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"], ""),
    ("0 * * * *", BERLIN, "2026-03-29T01:30:00", ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"], ""),
    ("0 3 * * *", BERLIN, "2026-03-28T12:00:00", ["2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"], ""),
    # Europe/Berlin fall-back, 2026-10-25: 03:00 CEST -> 02:00 CET (02:xx happens twice)
    (
        "30 2 * * *",
        BERLIN,
        "2026-10-24T12:00:00",
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        "2026-10-25T02:30:00+02:00, 2026-10-25T02:30:00+01:00 (twice)",
    ),
    ("0 * * * *", BERLIN, "2026-10-25T01:30:00", ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"], ""),
    ("*/30 * * * *", BERLIN, "2026-10-25T02:10:00", ["2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00"], ""),
    (
        "*/15 * * * * *",
        BERLIN,
        "2026-03-29T01:59:50",
        ["2026-03-29T03:00:00+02:00", "2026-03-29T03:00:15+02:00"],
        "seconds last: every second",
    ),
]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.mark.parametrize(("spec", "zone", "start", "expected", "croniter"), TABLE, ids=[str(r[0]) for r in TABLE])
def test_next_ticks_match_the_table(
    spec: str | timedelta, zone: str, start: str, expected: list[str], croniter: str
) -> None:
    parsed = parse_spec(spec, zone)
    begin = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone))
    ticks = parsed.upcoming(_ms(begin), len(expected))
    got = [datetime.fromtimestamp(t / 1000, ZoneInfo(zone)).isoformat() for t in ticks]
    assert got == expected, croniter


def test_last_at_or_before_includes_the_instant_itself() -> None:
    spec = parse_spec("0 * * * *")
    hour = _ms(datetime(2026, 1, 1, 5, tzinfo=UTC))
    assert spec.last_at_or_before(hour) == hour
    assert spec.last_at_or_before(hour + 59_000) == hour
    assert spec.last_at_or_before(hour - 1) == hour - 3_600_000
    every = parse_spec(timedelta(seconds=10))
    assert every.last_at_or_before(12_345) == 10_000
    assert every.next_after(10_000) == 20_000


def test_a_timedelta_spec_reads_as_go_duration_text_that_parses_again() -> None:
    for delta, text in ((timedelta(hours=1, minutes=30), "@every 1h30m"), (timedelta(seconds=1.5), "@every 1.5s")):
        spec = parse_spec(delta)
        assert spec.text == text
        assert parse_spec(spec.text).interval_ms == spec.interval_ms


def test_intervals_are_aligned_to_the_epoch_whatever_the_start() -> None:
    spec = parse_spec("@every 10s")
    assert spec.next_after(1_000) == spec.next_after(9_999) == 10_000
    assert spec.period_ms(0) == 10_000
    assert parse_spec("*/5 * * * *").period_ms(0) == 300_000


@pytest.mark.parametrize(
    "bad",
    [
        "* * * *",
        "* * * * * * *",
        "61 * * * *",
        "@fortnightly",
        "@every",
        "@every 10 parsecs",
        "@every 500ms",
        timedelta(milliseconds=999),
        timedelta(microseconds=1_000_500),
        "0 0 31 2 *",
        42,
    ],
)
def test_bad_specs_raise_a_typed_error(bad: object) -> None:
    with pytest.raises(ScheduleSpecError):
        parse_spec(bad)  # type: ignore[arg-type]


def test_unknown_zone_is_a_typed_error() -> None:
    with pytest.raises(ScheduleSpecError, match="Mars/Olympus"):
        parse_spec("* * * * *", "Mars/Olympus")
    assert parse_spec("* * * * *", "utc").tz is UTC
