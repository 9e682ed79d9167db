"""Results across managers: a producer's handle on a durable task another manager runs (in-memory store).

The same flow across two OS processes and a real redis-server is in worker-redis's tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import pytest
from core_helpers import GUARD
from worker_core import (
    ConfigurationError,
    DurableTaskType,
    Retry,
    TaskCancelledError,
    TaskContext,
    TaskManager,
    TaskNotFoundError,
    TaskStatus,
    TypedDurableRegistry,
)
from worker_core.durable.outcomes import RESULT_BYTES, RemoteTaskError, ResultNotStoredError
from worker_core.errors import ERROR_TEXT_CHARS
from worker_core.testing import InMemoryDurableBackend


class Job(msgspec.Struct):
    n: int
    mode: str = "ok"


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


job = DurableTaskType("job", Job, retries=1, retry_delay=0.001)
registry = TypedDurableRegistry()
started = asyncio.Event()


@registry.handler(job)
async def run_job(ctx: TaskContext, payload: Job) -> Any:
    if payload.mode == "fail":
        raise ValueError(f"bad input {payload.n}")
    if payload.mode == "retry" and ctx.attempt == 1:
        raise Retry(delay=0.001)
    if payload.mode == "opaque":
        return object()  # cannot be encoded
    if payload.mode == "unprintable":
        raise Unprintable
    if payload.mode == "huge-error":
        raise ValueError("x" * 1_000_000)
    if payload.mode == "huge-result":
        return "y" * (RESULT_BYTES + 1)
    if payload.mode == "unprintable-result":
        return Unprintable()  # neither JSON nor str() can make text of it
    if payload.mode == "block":
        started.set()
        await asyncio.Event().wait()
    return {"double": payload.n * 2}


@pytest.fixture(autouse=True)
def fresh_started() -> None:
    global started
    started = asyncio.Event()  # an Event binds to the first loop that waits on it: one per test


def worker(backend: InMemoryDurableBackend, **options: Any) -> TaskManager:
    return TaskManager(durable_backend=backend, durable_handlers=registry.handlers(), **options)


async def test_a_producer_awaits_a_result_another_manager_produced() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])  # never started
    task_id = await producer.register_durable_task(job.task(Job(n=21)))
    handle = producer.handle(task_id)
    before = handle.status
    assert before is None  # nothing read yet
    waiting = asyncio.create_task(handle.result(timeout=GUARD))
    async with worker(backend), asyncio.timeout(GUARD):
        assert await waiting == {"double": 42}
    assert handle.status is TaskStatus.COMPLETED
    assert handle.done()
    outcome = await producer.durable_outcome(task_id)
    assert outcome is not None
    assert (outcome.status, outcome.attempts, outcome.handler, outcome.queue) == (
        TaskStatus.COMPLETED,
        1,
        "job",
        "default",
    )
    assert outcome.finished_at >= outcome.started_at > 0


async def test_failures_retries_and_unencodable_results_are_kept() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])
    failed = await producer.register_durable_task(job.task(Job(n=1, mode="fail")))
    retried = await producer.register_durable_task(job.task(Job(n=2, mode="retry")))
    opaque = await producer.register_durable_task(job.task(Job(n=3, mode="opaque")))
    async with worker(backend), asyncio.timeout(GUARD):
        with pytest.raises(RemoteTaskError) as caught:
            await producer.handle(failed)
        assert await producer.handle(retried) == {"double": 4}
        with pytest.raises(ResultNotStoredError, match="could not be encoded"):
            await producer.handle(opaque)
    assert caught.value.error_type == "ValueError"
    assert caught.value.error_message == "bad input 1"
    assert "run_job" in caught.value.traceback
    failed_outcome = await producer.durable_outcome(failed)
    assert failed_outcome is not None
    assert failed_outcome.attempts == 2  # retries=1: both deliveries failed
    retried_outcome = await producer.durable_outcome(retried)
    assert retried_outcome is not None
    assert retried_outcome.attempts == 2
    recent = await producer.recent_outcomes()
    assert {o.id for o in recent} == {failed, retried, opaque}


async def test_a_cancelled_durable_task_is_reported_cancelled() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])
    task_id = await producer.register_durable_task(job.task(Job(n=0, mode="block")))
    async with worker(backend) as running, asyncio.timeout(GUARD):
        await started.wait()
        await running.cancel_task(task_id)
        with pytest.raises(TaskCancelledError):
            await producer.handle(task_id)


async def test_a_stored_result_with_a_timeout_of_zero_is_read_once() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])  # never started
    task_id = await producer.register_durable_task(job.task(Job(n=4)))
    handle = producer.handle(task_id)
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0)  # nothing stored yet: at once
    async with worker(backend), asyncio.timeout(GUARD):
        assert await producer.handle(task_id).result(timeout=GUARD) == {"double": 8}
    assert await handle.result(timeout=0) == {"double": 8}  # stored meanwhile: one read finds it


async def test_storing_results_can_be_turned_off() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])
    task_id = await producer.register_durable_task(job.task(Job(n=5)))
    async with worker(backend, durable_result_ttl=None) as running:
        async with asyncio.timeout(GUARD):
            while backend.get(task_id) is not None:  # noqa: ASYNC110 - acked: the record is gone
                await asyncio.sleep(0.005)
        assert await running.durable_outcome(task_id) is None
    with pytest.raises(TimeoutError):
        await producer.handle(task_id).result(timeout=0.05)


async def test_handles_and_lookups_without_a_result_store() -> None:
    async with TaskManager() as tm:
        with pytest.raises(TaskNotFoundError):
            tm.handle(uuid.uuid4())
        with pytest.raises(ConfigurationError, match="does not store task results"):
            await tm.durable_outcome(uuid.uuid4())
    with pytest.raises(ConfigurationError):
        TaskManager(durable_backend="memory://", durable_handlers=[job], durable_result_ttl=-1)


async def test_durable_outcome_can_wait_for_the_outcome() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[job])
    task_id = await producer.register_durable_task(job.task(Job(n=4)))
    assert await producer.durable_outcome(task_id) is None  # not finished: at once
    assert await producer.durable_outcome(task_id, wait=0.01) is None  # not within the wait
    waiting = asyncio.create_task(producer.durable_outcome(task_id, wait=None))
    async with worker(backend), asyncio.timeout(GUARD):
        outcome = await waiting
    assert outcome is not None
    assert outcome.value() == {"double": 8}
    with pytest.raises(ConfigurationError):
        await producer.durable_outcome(task_id, wait=-1)


async def test_a_handle_on_a_durable_task_held_here_reads_status_locally_and_waits_on_the_store() -> None:
    backend = InMemoryDurableBackend()
    async with worker(backend) as running, asyncio.timeout(GUARD):
        task_id = await running.register_durable_task(job.task(Job(n=0, mode="block")))
        await started.wait()
        handle = running.handle(task_id)
        status = handle.status
        assert status is TaskStatus.RUNNING  # the task runs here: its local status
        assert not handle.done()
        assert await handle.cancel() is True  # cancelled here, where it runs
        with pytest.raises(TaskCancelledError):
            await handle
        assert handle.status is TaskStatus.CANCELLED  # read from the stored outcome
        assert await handle.cancel() is False
        failed_id = await running.register_durable_task(job.task(Job(n=1, mode="fail")))
        with pytest.raises(RemoteTaskError, match="bad input 1"):  # the same error type wherever it ran
            await running.handle(failed_id).result(timeout=GUARD)


async def test_unprintable_and_huge_errors_and_results_are_settled_and_bounded() -> None:
    """An error whose str() raises used to stop the attempt from being settled (no outcome, the task redelivered
    until its delivery limit); a 1 MB message or a 50 MB result was stored whole, in the outcome and the DLQ."""
    backend = InMemoryDurableBackend()
    async with worker(backend) as running, asyncio.timeout(GUARD):
        ids = {
            mode: await running.register_durable_task(job.task(Job(n=0, mode=mode)))
            for mode in ("unprintable", "huge-error", "huge-result", "unprintable-result")
        }
        with pytest.raises(RemoteTaskError) as unprintable:
            await running.handle(ids["unprintable"])
        assert unprintable.value.error_message == "<unprintable Unprintable: str() raised RuntimeError>"
        with pytest.raises(RemoteTaskError) as huge:
            await running.handle(ids["huge-error"])
        assert huge.value.error_message.startswith("x" * ERROR_TEXT_CHARS + "... [")
        assert len(huge.value.error_message) < ERROR_TEXT_CHARS + 40
        with pytest.raises(ResultNotStoredError, match="over the 1,048,576-byte limit"):
            await running.handle(ids["huge-result"])
        with pytest.raises(ResultNotStoredError, match="could not be encoded"):
            await running.handle(ids["unprintable-result"])
        outcome = await running.durable_outcome(ids["huge-result"])
        assert outcome is not None
        assert (outcome.status, outcome.result, len(outcome.result_text)) == (TaskStatus.COMPLETED, None, 4096)
    reasons = {d.task.id: d.error for d in backend.dead_letters()}
    assert reasons[ids["unprintable"]] == "Unprintable: <unprintable Unprintable: str() raised RuntimeError>"
    assert len(reasons[ids["huge-error"]]) < ERROR_TEXT_CHARS + 60


async def test_a_durable_task_whose_stored_outcome_expired_is_answered_from_the_run_seen_here() -> None:
    backend = InMemoryDurableBackend()
    async with worker(backend, durable_result_ttl=0.05) as running, asyncio.timeout(GUARD):
        task_id = await running.register_durable_task(job.task(Job(n=4)))
        assert await running.handle(task_id).result(timeout=GUARD) == {"double": 8}
        finished = time.monotonic()
        while time.monotonic() - finished < 0.1:  # noqa: ASYNC110 - past the TTL: no event says so
            await asyncio.sleep(0.01)
        assert await running.durable_outcome(task_id) is None  # expired in the store
        handle = running.handle(task_id)
        assert handle.done()  # not a wait for an outcome that will never come
        assert await handle == {"double": 8}


async def test_the_stored_result_limit_is_an_option() -> None:
    backend = InMemoryDurableBackend()
    async with worker(backend, durable_result_max_bytes=10) as small, asyncio.timeout(GUARD):
        with pytest.raises(ResultNotStoredError, match="over the 10-byte limit"):
            await small.handle(await small.register_durable_task(job.task(Job(n=4))))  # {"double":8}: 12 bytes
    async with worker(backend, durable_result_max_bytes=2 * RESULT_BYTES) as large, asyncio.timeout(GUARD):
        assert len(await large.handle(await large.register_durable_task(job.task(Job(n=0, mode="huge-result"))))) > (
            RESULT_BYTES
        )
    for bad in (-1, 1.5, "1"):
        with pytest.raises(ConfigurationError, match="durable_result_max_bytes"):
            worker(backend, durable_result_max_bytes=bad)
