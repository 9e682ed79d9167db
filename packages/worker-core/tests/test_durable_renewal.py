"""Lease renewal: on by default, every held lease in one call per round, a lost lease cancels its attempt."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from core_helpers import until
from worker_core import TaskContext, TaskManager, TaskStatus
from worker_core.durable import DurableHandlerSpec, DurableTask, DurableTaskLease
from worker_core.durable.config import DurableOptions
from worker_core.errors import BackendUnavailableError, ConfigurationError
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class Job(msgspec.Struct):
    n: int


class RenewingBackend(ForwardingBackend[InMemoryDurableBackend]):
    """The in-memory backend with ``extend_many``, recording each renewal call; ``lose`` makes it report loss."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.renewals: list[int] = []
        self.settled: list[tuple[str, str]] = []
        self.lose = False

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        self.renewals.append(len(leases))
        if self.lose:
            return [False] * len(leases)
        return await self.inner.extend_many(leases, duration)

    async def ack(self, lease: DurableTaskLease) -> None:
        self.settled.append(("ack", lease.lease_id))
        await super().ack(lease)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        self.settled.append(("nack", lease.lease_id))
        await super().nack(lease, delay)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        self.settled.append(("fail", lease.lease_id))
        await super().fail(lease, error)


def manager(backend: Any, fn: Any, **overrides: Any) -> TaskManager:
    options: dict[str, Any] = {
        "max_workers": 4,
        "tasks_per_second": None,
        "max_retries": 2,
        "durable_backend": backend,
        "durable_handlers": {"job": DurableHandlerSpec(None, fn, payload_type=Job)},
        "durable_codec": "json",
        "durable_poll_interval": 0.01,
        "durable_lease": 0.6,
    }
    options.update(overrides)
    return TaskManager(**options)


def options(lease: float, renewal: Any) -> DurableOptions:
    return DurableOptions(InMemoryDurableBackend(), {"job": object()}, None, lease, 0.1, None, renewal)


def test_renewal_is_on_by_default_at_a_third_of_the_lease() -> None:
    assert options(30.0, None).renewal_s == pytest.approx(10.0)
    assert options(30.0, 0).renewal_s is None
    assert options(30.0, timedelta(0)).renewal_s is None
    assert options(30.0, 5.0).renewal_s == 5.0
    assert options(30.0, 40.0).renewal_s == 15.0  # never later than half the lease
    with pytest.raises(ConfigurationError):
        options(30.0, -1.0)


async def test_every_held_lease_is_renewed_in_one_call_per_round() -> None:
    backend = RenewingBackend()
    release = asyncio.Event()
    started: list[int] = []

    async def block(ctx: TaskContext, job: Job) -> int:
        started.append(job.n)
        await release.wait()
        return job.n

    async with manager(backend, block, durable_lease=0.3) as tm:
        with tm.subscribe_results(8) as results:
            for n in range(4):
                await tm.register_durable_task(DurableTask("job", Job(n)))
            await until(lambda: len(started) == 4)
            floor = len(backend.renewals)
            await until(lambda: len(backend.renewals) >= floor + 3)  # several rounds past the lease
            release.set()
            done = [await anext(results) for _ in range(4)]
    assert all(result.status is TaskStatus.COMPLETED for result in done)
    assert backend.renewals[floor : floor + 3] == [4, 4, 4]  # one call per round, all four leases in it
    assert sorted(started) == [0, 1, 2, 3]  # the 0.3 s lease never ran out: each ran once
    assert [op for op, _ in backend.settled] == ["ack"] * 4


async def test_a_lost_lease_cancels_the_attempt_with_the_reason_and_never_settles_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = RenewingBackend()
    reasons: list[str | None] = []
    running = asyncio.Event()
    ended = asyncio.Event()

    async def long(ctx: TaskContext, job: Job) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        finally:
            reasons.append(ctx.cancel_reason)
            ended.set()

    caplog.set_level(logging.WARNING, logger="worker_core.durable")
    async with manager(backend, long, durable_lease=0.3) as tm:
        await tm.register_durable_task(DurableTask("job", Job(1)))
        await asyncio.wait_for(running.wait(), 10)
        backend.lose = True
        await asyncio.wait_for(ended.wait(), 10)  # cancelled at the next renewal round, not after 60 s
        await until(lambda: tm.metrics().running == 0)
    assert reasons
    assert reasons[0] is not None
    assert "lease lost" in reasons[0]
    assert backend.settled == []  # neither acked, nacked nor dead-lettered from the node that lost it
    assert any("lease lost" in record.getMessage() for record in caplog.records)


async def test_a_thread_attempt_sees_ctx_cancelled_when_its_lease_is_lost() -> None:
    backend = RenewingBackend()
    seen = threading.Event()
    running = threading.Event()
    reasons: list[str | None] = []

    def plain(ctx: TaskContext, job: Job) -> None:
        running.set()
        if ctx.cancelled.wait(30):
            reasons.append(ctx.cancel_reason)
            seen.set()

    async with manager(backend, plain, durable_lease=0.3) as tm:
        await tm.register_durable_task(DurableTask("job", Job(2)))
        await until(running.is_set)
        backend.lose = True
        await until(seen.is_set)
        await until(lambda: tm.metrics().running == 0)
    assert reasons[0] is not None
    assert "lease lost" in reasons[0]
    assert backend.settled == []


class UnreachableRenewals(RenewingBackend):
    """The store becomes unreachable once ``unreachable`` is set: renewals and dequeues fail."""

    def __init__(self) -> None:
        super().__init__()
        self.unreachable = False

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        if self.unreachable:
            raise BackendUnavailableError("store unreachable")
        return await super().dequeue(limit, lease)

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        if self.unreachable:
            self.renewals.append(-1)
            raise BackendUnavailableError("store unreachable")
        return await super().extend_many(leases, duration)


async def test_a_lease_that_runs_out_while_renewals_fail_cancels_its_attempt() -> None:
    backend = UnreachableRenewals()
    reasons: list[str | None] = []
    running = asyncio.Event()
    ended = asyncio.Event()

    async def long(ctx: TaskContext, job: Job) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        finally:
            reasons.append(ctx.cancel_reason)
            ended.set()

    async with manager(backend, long, durable_lease=0.3) as tm:
        await tm.register_durable_task(DurableTask("job", Job(3)))
        await asyncio.wait_for(running.wait(), 10)
        backend.unreachable = True
        await asyncio.wait_for(ended.wait(), 10)  # once the lease's own expiry passed, not after 60 s
        await until(lambda: tm.metrics().running == 0)
    assert reasons[0] is not None
    assert reasons[0].startswith("lease expired")
    assert -1 in backend.renewals
    assert backend.settled == []


async def test_a_task_delivered_again_to_the_same_node_cancels_the_older_attempt() -> None:
    backend = RenewingBackend()
    reasons: list[str | None] = []
    attempts: list[int] = []
    first_ended = asyncio.Event()
    release = asyncio.Event()

    async def long(ctx: TaskContext, job: Job) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt > 1:
            await release.wait()
            return "second"
        try:
            await asyncio.sleep(60)
        finally:
            reasons.append(ctx.cancel_reason)
            first_ended.set()
        return "first"

    # No renewal: the first lease runs out while its attempt runs, and this node, with free workers, leases again.
    async with manager(backend, long, durable_lease=0.3, durable_lease_renewal_interval=0) as tm:
        with tm.subscribe_results(4) as results:
            await tm.register_durable_task(DurableTask("job", Job(4)))
            await asyncio.wait_for(first_ended.wait(), 10)
            release.set()
            result = await anext(results)
    assert attempts[:2] == [1, 2]
    assert reasons[0] is not None
    assert reasons[0].startswith("lease expired")
    assert result.result == "second"
    assert [op for op, _ in backend.settled] == ["ack"]  # only the current delivery settles
