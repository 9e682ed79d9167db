"""The counters a manager keeps, as a plain snapshot (worker-otel reports them as OTel instruments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ("MetricsSnapshot",)


@final
@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Counters since the manager was created; latency fields are float seconds.

    Attributes:
        scheduled: Tasks accepted by ``register_task`` or ``register_durable_task`` (not retries).
        running: Attempts executing now.
        completed: Tasks that ended ``COMPLETED``.
        failed: Tasks that ended ``FAILED`` or ``DEADLINE_EXCEEDED`` (each counted once).
        cancelled: Tasks that ended ``CANCELLED``.
        retried: Retries scheduled (in-memory backoff or durable nack).
        results_dropped: Results lost to a full subscriber buffer, evictions included.
        queue_depth: Tasks waiting to start (ready and delayed).
        latency_count: Finished tasks that had started.
        latency_total: Sum of their last attempt's duration.
        latency_max: The longest such duration.
        abandoned: Attempts and hook calls the manager stopped waiting for, so far: a stop past its bound
            finished them ``CANCELLED`` while their code still ran.
        abandoned_threads: Threads still running a plain function whose attempt ended without it (a timeout,
            a stop past its bound); each frees itself when the function returns.
    """

    scheduled: int
    running: int
    completed: int
    failed: int
    cancelled: int
    retried: int
    results_dropped: int
    queue_depth: int
    latency_count: int
    latency_total: float
    latency_max: float
    abandoned: int = 0
    abandoned_threads: int = 0
