"""The durable loop in the rebuilt runtime: pause and resume, retention of finished durable tasks, and a lease
loop that survives a stray CancelledError from its backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from core_helpers import GUARD, stop_quietly
from worker_core import (
    DurableHandlerSpec,
    DurableTask,
    DurableTaskLease,
    RetentionPolicy,
    TaskContext,
    TaskManager,
    TaskStatus,
)
from worker_core.testing import ForwardingBackend, InMemoryDurableBackend


class Job(msgspec.Struct):
    n: int


class Counter:
    """A handler that counts its calls and sets ``reached`` at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.calls = 0
        self.reached = asyncio.Event()

    async def __call__(self, ctx: TaskContext, job: Job) -> int:
        self.calls += 1
        if self.calls >= self.target:
            self.reached.set()
        return job.n


def durable_manager(backend: Any, fn: Callable[..., Any], **overrides: Any) -> TaskManager:
    options: dict[str, Any] = {
        "max_workers": 2,
        "tasks_per_second": None,
        "retry_delay": 30.0,
        "durable_backend": backend,
        "durable_handlers": {"h": DurableHandlerSpec(None, fn, payload_type=Job)},
        "durable_poll_interval": 0.01,
    }
    options.update(overrides)
    return TaskManager(**options)


class WatchedBackend(ForwardingBackend[InMemoryDurableBackend]):
    """Sets ``polled`` on every dequeue and ``leased`` on one that hands out a task."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.polled = asyncio.Event()
        self.leased = asyncio.Event()

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        self.polled.set()
        leases = await super().dequeue(limit, lease)
        if leases:
            self.leased.set()
        return leases


async def test_durable_tasks_registered_while_paused_run_once_workers_are_back() -> None:
    backend = WatchedBackend()
    handler = Counter(3)
    tm = durable_manager(backend, handler)
    await tm.start()
    try:
        with tm.subscribe_results(10) as results:
            async with asyncio.timeout(GUARD):
                await backend.polled.wait()  # the lease loop runs
            tm.set_max_workers(0)
            ids = await tm.register_durable_tasks(*(DurableTask("h", Job(n)) for n in range(3)))
            with pytest.raises(TimeoutError):  # polling every 0.01 s, the loop sees the tasks and the pause
                async with asyncio.timeout(0.2):
                    await backend.leased.wait()
            assert backend.inner.ready_count() == 3  # nothing leased while paused
            tm.set_max_workers(2)
            async with asyncio.timeout(GUARD):
                await handler.reached.wait()
                finished = [await anext(results) for _ in ids]
        assert sorted(r.task.id for r in finished) == sorted(ids)
        assert {r.status for r in finished} == {TaskStatus.COMPLETED}
        assert {r.result for r in finished} == {0, 1, 2}
    finally:
        await stop_quietly(tm)


async def test_finished_durable_tasks_are_evicted_by_the_retention_policy() -> None:
    handler = Counter(20)
    tm = durable_manager(InMemoryDurableBackend(), handler)
    await tm.start()
    try:
        tm.set_retention_policy(RetentionPolicy(max_entries=5))
        with tm.subscribe_results(20) as results:
            await tm.register_durable_tasks(*(DurableTask("h", Job(n)) for n in range(20)))
            async with asyncio.timeout(GUARD):
                await handler.reached.wait()
                finished = [await anext(results) for _ in range(20)]
        assert {r.status for r in finished} == {TaskStatus.COMPLETED}
        assert len(tm.get_tasks()) <= 5
    finally:
        await stop_quietly(tm)


class CancelOnceBackend(ForwardingBackend[InMemoryDurableBackend]):
    """Raises ``asyncio.CancelledError`` from its first dequeue: not a cancellation of anything."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.raised = asyncio.Event()

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        if not self.raised.is_set():
            self.raised.set()
            raise asyncio.CancelledError()
        return await super().dequeue(limit, lease)


async def test_a_cancelled_error_raised_by_dequeue_does_not_end_the_lease_loop() -> None:
    backend = CancelOnceBackend()
    handler = Counter(1)
    tm = durable_manager(backend, handler)
    await tm.start()
    try:
        async with asyncio.timeout(GUARD):
            await backend.raised.wait()
            assert tm.running
            await tm.register_durable_task(DurableTask("h", Job(7)))
            await handler.reached.wait()
        assert tm.running
    finally:
        await stop_quietly(tm)


async def test_a_lease_loop_killed_by_a_bug_is_restarted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Bug(BaseException):
        """Not an Exception: the lease loop does not catch it, so it ends the loop."""

    class Buggy(ForwardingBackend[InMemoryDurableBackend]):
        failures = 1

        async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
            if Buggy.failures:
                Buggy.failures -= 1
                raise Bug("a bug below the lease loop")
            return await self.inner.dequeue(limit, lease)

    done = asyncio.Event()

    async def handle(ctx: TaskContext, payload: Any) -> None:
        done.set()

    tm = TaskManager(
        max_workers=1,
        durable_backend=Buggy(InMemoryDurableBackend()),
        durable_handlers={"h": DurableHandlerSpec(None, handle)},
        durable_poll_interval=0.01,
    )
    async with asyncio.timeout(GUARD):
        async with tm:
            await tm.register_durable_task(DurableTask("h", {"n": 1}))
            await done.wait()
            assert tm.running
    assert any("durable-lease died; restarting it" in r.getMessage() for r in caplog.records)


class GatedBackend(ForwardingBackend[InMemoryDurableBackend]):
    """A dequeue that waits at ``gate`` (``entered`` set once it does) before leasing."""

    def __init__(self) -> None:
        super().__init__(InMemoryDurableBackend())
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        self.entered.set()
        await self.gate.wait()
        return await super().dequeue(limit, lease)


async def test_a_graceful_stop_hands_back_what_a_dequeue_in_flight_leased_and_ends() -> None:
    # The stop begins while a dequeue is on its way; the tasks it then leases are never queued, and the drain
    # must hand their leases back rather than wait for them forever.
    backend = GatedBackend()
    handler = Counter(1)
    tm = durable_manager(backend, handler)
    await tm.start()
    try:
        await tm.register_durable_tasks(*(DurableTask("h", Job(n)) for n in range(2)))
        async with asyncio.timeout(GUARD):
            await backend.entered.wait()
        stop = asyncio.create_task(tm.stop_graceful())
        await asyncio.sleep(0)  # the stop has begun: intake closed, nothing more leased
        backend.gate.set()
        async with asyncio.timeout(GUARD):
            await stop
        assert handler.calls == 0  # never started here ...
        assert backend.inner.ready_count() == 2  # ... and handed back for another node: nothing lost
    finally:
        await stop_quietly(tm)
