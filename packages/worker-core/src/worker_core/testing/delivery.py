"""The delivery checks of the fault harness: at least once, and exactly once, read from a fleet's attempt logs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .faults import FaultFleet

__all__ = ("DeliveryReport", "check_at_least_once", "check_exactly_once")


@dataclass(frozen=True)
class DeliveryReport:
    """What :func:`check_at_least_once` found (for a test to print or assert more on)."""

    #: Starts (deliveries that reached the handler) per task.
    starts: Counter[str]
    #: Tasks that started more than once.
    duplicated: frozenset[str]
    #: Tasks a kill cut short (started, not finished, on a killed worker), with the kill's epoch seconds.
    in_flight: dict[str, float]
    #: The longest wait from a kill to the next start of a task it cut short, in seconds.
    slowest_redelivery_s: float


def check_at_least_once(
    fleet: FaultFleet,
    ids: Iterable[str],
    *,
    redelivery_within: float | None = None,
    expect_in_flight: bool = True,
) -> DeliveryReport:
    """Assert the at-least-once contract on the fleet's logs.

    Every task in ``ids`` finished at least once; a task started more than once only if a killed worker had
    started it; every task a kill cut short started again (within ``redelivery_within`` seconds of the kill
    when given). With ``expect_in_flight``, at least one kill must have caught a task mid-run.

    Raises:
        AssertionError: any of those does not hold.
    """
    wanted = set(ids)
    missing = wanted - fleet.completed()
    assert not missing, f"{len(missing)} tasks never finished: {sorted(missing)[:5]}"
    starts = fleet.starts()
    killed = fleet.killed()
    in_flight: dict[str, float] = {}
    taken_by_killed: set[str] = set()
    for worker in killed:
        done_here = {r.task_id for r in fleet.records("D", worker)}
        for record in fleet.records("S", worker):
            taken_by_killed.add(record.task_id)
            if record.task_id not in done_here and worker.killed_at is not None:
                in_flight[record.task_id] = worker.killed_at
    if expect_in_flight:
        assert in_flight, "the kills should have caught tasks mid-run"
    counts = Counter({task_id: len(s) for task_id, s in starts.items()})
    duplicated = frozenset(task_id for task_id, n in counts.items() if n > 1)
    unexplained = duplicated - taken_by_killed
    assert not unexplained, f"ran twice without a kill: {sorted(unexplained)[:5]}"
    not_rerun = set(in_flight) - duplicated
    assert not not_rerun, f"cut short by a kill and never run again: {sorted(not_rerun)[:5]}"
    slowest = 0.0
    for task_id, killed_at in in_flight.items():
        redelivered = min(r.at for r in starts[task_id] if r.at > killed_at)
        slowest = max(slowest, redelivered - killed_at)
        if redelivery_within is not None:
            late = redelivered - killed_at
            assert late <= redelivery_within, f"{task_id} redelivered {late:.2f}s after the kill"
    return DeliveryReport(counts, duplicated, in_flight, slowest)


def check_exactly_once(fleet: FaultFleet, ids: Iterable[str]) -> Counter[str]:
    """Assert that every task in ``ids``, and no other, started exactly once (no kill, no lease lost).

    Raises:
        AssertionError: a task missing, unknown, or started more than once.
    """
    counts = Counter(r.task_id for r in fleet.records("S"))
    wanted = set(ids)
    missing, unknown = sorted(wanted - set(counts)), sorted(set(counts) - wanted)
    assert not missing, f"never started: {missing[:5]}"
    assert not unknown, f"started, not asked for: {unknown[:5]}"
    twice = {task_id: n for task_id, n in counts.items() if n > 1}
    assert not twice, f"started more than once: {dict(list(twice.items())[:5])}"
    return counts
