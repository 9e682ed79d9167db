"""The shared part of the durable backend conformance suite: settings, overridable hooks and helpers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from worker_core.durable.outcomes import ResultStoreBackend, TaskOutcome
from worker_core.durable.types import (
    DEFAULT_EXTRA_DELIVERIES,
    DurableBackend,
    DurableTask,
    DurableTaskLease,
    IdempotencyKeyBackend,
)
from worker_core.status import TaskStatus

__all__ = ("LONG_LEASE", "ConformanceBase")

LONG_LEASE = 30.0
_LONG_LEASE = LONG_LEASE


class ConformanceBase:
    """The settings, hooks and helpers every part of :class:`~worker_core.testing.DurableBackendConformance` uses.

    Overridable:
        lease: Lease, in seconds, of the expiry tests (short: they wait for it).
        delay: Nack delay and ``run_at`` offset, in seconds, of the delay tests.
        patience: Seconds to poll for an expected delivery before failing.
        advance: Let time pass (real sleep by default).
        now: The backend's current epoch time (``time.time()`` by default).
        dead_letters: ``{task id: last error}`` of the backend's dead-letter queue.
        extra_deliveries: The backend's deliveries beyond ``retries + 1`` (its delivery limit).
    """

    lease: ClassVar[float] = 0.5
    delay: ClassVar[float] = 0.5
    patience: ClassVar[float] = 10.0
    extra_deliveries: ClassVar[int] = DEFAULT_EXTRA_DELIVERIES
    poll_step: ClassVar[float] = 0.05

    # -- hooks a subclass may override ---------------------------------------------------------------

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the backend's clock (a real sleep unless overridden)."""
        await asyncio.sleep(seconds)

    def now(self) -> float:
        """The backend's current time in epoch seconds."""
        return time.time()

    async def dead_letters(self, backend: Any) -> Mapping[str, str]:
        """``{task id: last error}`` for every dead-lettered task (uses ``backend.dead_letters()``)."""
        lister = getattr(backend, "dead_letters", None)
        if lister is None:
            pytest.skip("override dead_letters() to inspect this backend's dead-letter queue")
        entries = lister()
        if asyncio.iscoroutine(entries):
            entries = await entries
        return {str(entry.task.id): entry.error for entry in entries}

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def make_task(
        handler: str = "conformance",
        payload: bytes = b"payload",
        **fields: Any,
    ) -> DurableTask:
        """A task as the manager hands it to a backend: id, payload, queue, retries and retry delay set."""
        fields.setdefault("id", uuid.uuid4())
        fields.setdefault("queue", "default")
        fields.setdefault("retries", 3)
        fields.setdefault("retry_delay", 1.0)
        return DurableTask(handler, None, payload, **fields)

    async def dequeue_one(self, backend: DurableBackend, lease: float = _LONG_LEASE) -> DurableTaskLease:
        """Dequeue exactly one lease, failing the test if there is none or more."""
        leases = await backend.dequeue(1, lease)
        assert len(leases) == 1, f"expected one lease, got {len(leases)}"
        return leases[0]

    async def poll_dequeue(self, backend: DurableBackend, lease: float = _LONG_LEASE) -> DurableTaskLease:
        """Advance time in small steps until a dequeue returns a lease (fails after ``patience`` seconds)."""
        steps = max(int(self.patience / self.poll_step), 1)
        for _ in range(steps):
            leases = await backend.dequeue(1, lease)
            if leases:
                assert len(leases) == 1
                return leases[0]
            await self.advance(self.poll_step)
        pytest.fail(f"no task was delivered within {self.patience} s")

    async def assert_empty(self, backend: DurableBackend) -> None:
        """Nothing is ready right now."""
        leases = await backend.dequeue(10, _LONG_LEASE)
        assert leases == [], f"expected no ready task, got {[lease.lease_id for lease in leases]}"

    # -- result store (ResultStoreBackend, optional) -------------------------------------------------

    def _store(self, backend: DurableBackend) -> ResultStoreBackend:
        if not isinstance(backend, ResultStoreBackend):
            pytest.skip("the backend stores no task results")
        return backend

    @staticmethod
    def make_outcome(lease: DurableTaskLease, status: TaskStatus = TaskStatus.COMPLETED, **fields: Any) -> TaskOutcome:
        """An outcome of the attempt of ``lease``, as the manager builds one."""
        record = lease.task
        assert record.id is not None
        return TaskOutcome(
            id=record.id,
            handler=record.handler,
            queue=record.queue,
            status=status,
            attempts=lease.attempts,
            finished_at=time.time(),
            **fields,
        )

    # -- idempotency keys (IdempotencyKeyBackend) ---------------------------------------------------

    @staticmethod
    def _require_keys(backend: DurableBackend) -> None:
        if not isinstance(backend, IdempotencyKeyBackend):
            pytest.skip("the backend does not implement IdempotencyKeyBackend")
