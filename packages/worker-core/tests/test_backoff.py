from __future__ import annotations

import uuid

import pytest
from worker_core.backoff import (
    MAX_BACKOFF,
    durable_retry_delay,
    durable_retry_delay_ns,
    next_backoff,
    retry_jitter,
    retry_jitter_ns,
)

ONES = uuid.UUID("11111111-2222-3333-4444-555555555555")
ZERO = uuid.UUID(int=0)
FULL = uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")
SAMPLE = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        (ONES, [933072894, 962318141, 1097087868]),
        (ZERO, [982269761, 1064539522, 946809283]),
        (FULL, [982269761, 1064539522, 946809283]),
        (SAMPLE, [1015934630, 1045425765, 979949604]),
    ],
)
def test_jitter_reproduces_the_go_vectors(task_id: uuid.UUID, expected: list[int]) -> None:
    assert [retry_jitter_ns(SECOND, task_id, attempt) for attempt in (1, 2, 3)] == expected
    assert [round(retry_jitter(1.0, task_id, attempt) * SECOND) for attempt in (1, 2, 3)] == expected


IN_MEMORY_SEQUENCE = [933072894, 2062318141, 4397087868, 8026333627, 15761103354, 33390348601, 56725118328, 54776460983]


def test_in_memory_backoff_sequence_doubles_caps_at_a_minute_and_jitters() -> None:
    base = 1.0
    delays = []
    for attempt in range(1, 9):
        delays.append(round(retry_jitter(base, ONES, attempt) * SECOND))
        base = next_backoff(base)
    assert delays == IN_MEMORY_SEQUENCE
    assert base == MAX_BACKOFF


def test_durable_formula_gives_the_same_numbers() -> None:
    assert [durable_retry_delay_ns(SECOND, attempt, ONES) for attempt in range(1, 9)] == IN_MEMORY_SEQUENCE
    assert [round(durable_retry_delay(1.0, attempt, ONES) * SECOND) for attempt in range(1, 9)] == IN_MEMORY_SEQUENCE


def test_durable_formula_defaults_bad_base_and_attempt() -> None:
    assert durable_retry_delay_ns(0, 0, ONES) == retry_jitter_ns(SECOND, ONES, 1)
    assert durable_retry_delay_ns(-5, -1, ONES) == 933072894


def test_jitter_stays_within_ten_percent() -> None:
    for _ in range(200):
        task_id = uuid.uuid4()
        assert 0.9 <= retry_jitter(1.0, task_id, 1) <= 1.1


def test_tiny_delay_is_not_jittered() -> None:
    assert retry_jitter_ns(4, ONES, 1) == 4
    assert retry_jitter_ns(0, ONES, 1) == 0
