"""Task statuses and the set of terminal ones."""

from __future__ import annotations

from enum import StrEnum

__all__ = ("TERMINAL_STATUSES", "TaskStatus")


class TaskStatus(StrEnum):
    """Where a task is in its life; the last five are terminal and never change again.

    ``RETRYING`` means "waiting in retry backoff" (go-worker's ``RateLimited``): a task waiting for a
    rate-limiter token is still ``QUEUED``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INVALID = "invalid"

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETED, FAILED, CANCELLED, DEADLINE_EXCEEDED and INVALID."""
        return self in TERMINAL_STATUSES

    @property
    def go_name(self) -> str:
        """go-worker's name for this status (what its gRPC ``GetTask`` returns)."""
        return _GO_NAMES[self]

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.DEADLINE_EXCEEDED,
        TaskStatus.INVALID,
    }
)

_GO_NAMES: dict[TaskStatus, str] = {
    TaskStatus.QUEUED: "Queued",
    TaskStatus.RUNNING: "Running",
    TaskStatus.RETRYING: "RateLimited",
    TaskStatus.COMPLETED: "Completed",
    TaskStatus.FAILED: "Failed",
    TaskStatus.CANCELLED: "Cancelled",
    TaskStatus.DEADLINE_EXCEEDED: "ContextDeadlineReached",
    TaskStatus.INVALID: "Invalid",
}
