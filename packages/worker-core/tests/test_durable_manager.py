"""go-worker's durable tests and the durable loop's guarantees, through a real TaskManager
against the in-memory backend. ``RecordingBackend`` forwards every call to it and records the call."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from core_helpers import until
from worker_core import (
    BackendUnavailableError,
    ConfigurationError,
    DurableOnlyError,
    DurableTaskExistsError,
    HandlerNotFoundError,
    InvalidTaskError,
    ManagerStoppedError,
    PayloadError,
    Task,
    TaskContext,
    TaskManager,
    TaskStatus,
)
from worker_core.durable import DurableHandlerSpec, DurableTask, DurableTaskLease, FailureReason, MsgspecJsonCodec
from worker_core.testing import FakeClock, InMemoryDurableBackend


class Email(msgspec.Struct):
    to: str


class RecordingBackend:
    """The in-memory backend, with every call recorded (and optional unavailability on dequeue)."""

    def __init__(self, dequeue_failures: int = 0, clock: FakeClock | None = None) -> None:
        self.inner = InMemoryDurableBackend(clock)
        self.calls: list[tuple[Any, ...]] = []
        self.enqueued: list[DurableTask] = []
        self.dequeue_failures = dequeue_failures
        self.after_dequeue: Callable[[], None] | None = None

    def configure_queues(self, default_queue: str, weights: Mapping[str, int]) -> None:
        self.inner.configure_queues(default_queue, weights)

    def count(self, op: str) -> int:
        return sum(1 for call in self.calls if call[0] == op)

    def args(self, op: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == op]

    async def enqueue(self, task: DurableTask) -> None:
        self.calls.append(("enqueue", task.id))
        await self.inner.enqueue(task)
        self.enqueued.append(task)

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        if self.dequeue_failures > 0:
            self.dequeue_failures -= 1
            self.calls.append(("dequeue_error",))
            raise BackendUnavailableError("store unreachable")
        leases = await self.inner.dequeue(limit, lease)
        if leases:
            self.calls.append(("dequeue", limit, len(leases)))
            if self.after_dequeue is not None:
                self.after_dequeue()
        return leases

    async def ack(self, lease: DurableTaskLease) -> None:
        self.calls.append(("ack", lease.lease_id))
        await self.inner.ack(lease)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        self.calls.append(("nack", lease.lease_id, delay))
        await self.inner.nack(lease, delay)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        self.calls.append(("fail", lease.lease_id, error))
        await self.inner.fail(lease, error)

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        self.calls.append(("extend", lease.lease_id))
        await self.inner.extend(lease, duration)

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        self.calls.append(("release", len(leases)))
        await self.inner.release(leases)

    async def wait_for_work(self, max_wait: float) -> None:
        await self.inner.wait_for_work(max_wait)


class CountingCodec:
    """msgspec JSON, counting encode and decode calls (go-worker's tests count Marshal/Unmarshal)."""

    name = "json"

    def __init__(self) -> None:
        self.inner = MsgspecJsonCodec()
        self.encoded = 0
        self.decoded = 0

    def encode(self, obj: Any) -> bytes:
        self.encoded += 1
        return self.inner.encode(obj)

    def decode(self, data: bytes, spec: Any) -> Any:
        self.decoded += 1
        return self.inner.decode(data, spec)


def email_spec(fn: Any) -> DurableHandlerSpec[Any]:
    return DurableHandlerSpec(None, fn, payload_type=Email)


def durable_manager(backend: Any, fn: Any, **overrides: Any) -> TaskManager:
    options: dict[str, Any] = {
        "max_workers": 2,
        "tasks_per_second": None,
        "timeout": 30.0,
        "retry_delay": 30.0,
        "max_retries": 3,
        "durable_backend": backend,
        "durable_handlers": {"email": email_spec(fn)},
        "durable_poll_interval": 0.01,
    }
    options.update(overrides)
    return TaskManager(**options)


async def send(ctx: TaskContext, payload: Email) -> str:
    return f"sent to {payload.to}"


async def in_memory(ctx: TaskContext) -> None:
    return None


async def test_register_with_message_encodes_once() -> None:
    backend, codec = RecordingBackend(), CountingCodec()
    async with durable_manager(backend, send, durable_codec=codec) as tm:
        tm.set_max_workers(0)
        task_id = await tm.register_durable_task(DurableTask("email", Email("a@example.com")))
        assert codec.encoded == 1
        assert codec.decoded == 0
        assert backend.enqueued[0].id == task_id
        assert backend.enqueued[0].payload == codec.inner.encode(Email("a@example.com"))


async def test_register_with_payload_only_decodes_once_and_sets_message() -> None:
    backend, codec = RecordingBackend(), CountingCodec()
    async with durable_manager(backend, send, durable_codec=codec) as tm:
        tm.set_max_workers(0)
        await tm.register_durable_task(DurableTask("email", payload=b'{"to":"b@example.com"}'))
        assert codec.decoded == 1
        assert codec.encoded == 0
        assert backend.enqueued[0].message == Email("b@example.com")


async def test_success_publishes_a_result_and_acks_once() -> None:
    backend = RecordingBackend()
    async with durable_manager(backend, send) as tm:
        with tm.subscribe_results(5) as results:
            task_id = await tm.register_durable_task(DurableTask("email", Email("a@example.com")))
            result = await anext(results)
        assert result.task.id == task_id
        assert result.status is TaskStatus.COMPLETED
        assert result.result == "sent to a@example.com"
        assert result.error is None
        assert result.task.durable is True
        assert result.task.name == "email"  # a durable task's name is its handler
        assert tm.get_task(task_id).status is TaskStatus.COMPLETED
    assert backend.count("ack") == 1
    assert backend.count("nack") == backend.count("fail") == 0
    assert len(backend.inner) == 0


async def test_an_in_memory_task_is_not_durable() -> None:
    task = Task(in_memory)
    assert task.durable is False
    async with TaskManager(max_workers=1, tasks_per_second=None) as tm:
        await tm.register_task(task)
        await tm.wait(5)
    assert task.durable is False


async def test_lease_is_extended_while_the_handler_runs() -> None:
    backend = RecordingBackend()
    release = asyncio.Event()

    async def block(ctx: TaskContext, payload: Email) -> str:
        await release.wait()
        return "done"

    tm = durable_manager(backend, block, durable_lease=0.05, durable_lease_renewal_interval=0.01)
    async with tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("x")))
            await until(lambda: backend.count("extend") >= 1, limit=5)
            release.set()
            result = await anext(results)
    assert result.status is TaskStatus.COMPLETED
    assert backend.count("ack") == 1


async def test_error_without_retries_fails_to_the_dead_letter_queue(caplog: pytest.LogCaptureFixture) -> None:
    backend = RecordingBackend()

    async def broken(ctx: TaskContext, payload: Email) -> None:
        raise ValueError("mailbox full")

    caplog.set_level(logging.ERROR, logger="worker_core.durable")
    async with durable_manager(backend, broken) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("x"), retries=0))
            result = await anext(results)
        metrics = tm.metrics()
    assert result.status is TaskStatus.FAILED
    assert isinstance(result.error, ValueError)
    assert backend.count("fail") == 1
    assert backend.count("ack") == 0
    [dead] = backend.inner.dead_letters()
    assert "mailbox full" in dead.error
    assert metrics.failed == 1
    [(_, reason)] = backend.args("fail")
    assert isinstance(reason, FailureReason)  # the backend gets the type and the traceback with the text
    assert reason == "ValueError: mailbox full"
    assert reason.error_type == "ValueError"
    assert 'raise ValueError("mailbox full")' in reason.traceback
    [logged] = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None  # what Sentry's and OTel's logging integrations read
    assert logged.exc_info[1] is result.error


async def test_error_with_retries_left_nacks_with_a_positive_delay() -> None:
    backend = RecordingBackend()

    async def broken(ctx: TaskContext, payload: Email) -> None:
        raise ValueError("try later")

    async with durable_manager(backend, broken) as tm:
        task_id = await tm.register_durable_task(DurableTask("email", Email("x"), retries=2))
        await until(lambda: backend.count("nack") == 1)
        assert tm.metrics().retried == 1
    [(lease_id, delay)] = backend.args("nack")
    assert lease_id == str(task_id)
    assert delay > 0
    assert backend.count("fail") == 0
    state = backend.inner.get(task_id)
    assert state is not None
    assert state.state == "ready"


async def test_deadline_with_retries_nacks_and_without_fails() -> None:
    for retries, op in ((1, "nack"), (0, "fail")):
        backend = RecordingBackend()

        async def wait_forever(ctx: TaskContext, payload: Email) -> None:
            await asyncio.Event().wait()

        async with durable_manager(backend, wait_forever, timeout=0.01) as tm:
            await tm.register_durable_task(DurableTask("email", Email("x"), retries=retries))
            await until(lambda backend=backend, op=op: backend.count(op) == 1)  # type: ignore[misc]
        assert backend.count("nack" if op == "fail" else "fail") == 0
        if op == "fail":
            [dead] = backend.inner.dead_letters()
            assert "TaskTimeoutError" in dead.error


async def test_bad_payload_is_dead_lettered_at_once_an_unknown_handler_is_put_back_first() -> None:
    clock = FakeClock()
    backend = RecordingBackend(clock=clock)
    async with durable_manager(backend, send) as tm:
        with tm.subscribe_results(5) as results:
            # Bypass the manager's checks: another producer (or another version) wrote these.
            await backend.inner.enqueue(DurableTask("email", payload=b"{not json", id=uuid.uuid4(), retries=3))
            await backend.inner.enqueue(DurableTask("sms", payload=b"{}", id=uuid.uuid4(), retries=3))
            good = await tm.register_durable_task(DurableTask("email", Email("ok")))
            result = await anext(results)
            await until(lambda: len(backend.inner.dead_letters()) == 1 and backend.count("nack") == 1)
            # A rolling deploy: a node that knows "sms" may take it; this one puts it back, twice, then gives up.
            assert [delay for _, delay in backend.args("nack")] == [10.0]
            clock.advance(10.0)
            await until(lambda: backend.count("nack") == 2)
            assert backend.args("nack")[1][1] == 30.0
            clock.advance(30.0)
            await until(lambda: len(backend.inner.dead_letters()) == 2)
    assert result.task.id == good
    reasons = sorted(d.error for d in backend.inner.dead_letters())
    assert "undecodable payload" in reasons[1]
    assert 'handler "sms"' in reasons[0]
    assert "delivered 3 times" in reasons[0]


async def test_registration_errors_are_typed_and_enqueue_nothing() -> None:
    backend = RecordingBackend()
    async with durable_manager(backend, send) as tm:
        tm.set_max_workers(0)
        with pytest.raises(DurableOnlyError):
            await tm.register_task(Task(in_memory))
        with pytest.raises(HandlerNotFoundError):
            await tm.register_durable_task(DurableTask("sms", Email("x")))
        with pytest.raises(PayloadError):
            await tm.register_durable_task(DurableTask("email"))
        with pytest.raises(PayloadError):
            await tm.register_durable_task(DurableTask("email", payload=b"\xff\x00"))
        with pytest.raises(PayloadError):
            await tm.register_durable_task(DurableTask("email", payload=b'{"to": 5}'))
        with pytest.raises(InvalidTaskError):
            await tm.register_durable_task(DurableTask("email", Email("x"), retries=-1))
        not_a_task: Any = Task(in_memory)
        with pytest.raises(InvalidTaskError):
            await tm.register_durable_task(not_a_task)
        first = await tm.register_durable_task(DurableTask("email", Email("x")))
        with pytest.raises(DurableTaskExistsError):
            await tm.register_durable_task(DurableTask("email", Email("y"), id=first))
        with pytest.raises(ExceptionGroup) as group:
            await tm.register_durable_tasks(DurableTask("email", Email("z")), DurableTask("nope", Email("z")))
        assert [type(e) for e in group.value.exceptions] == [HandlerNotFoundError]
    assert backend.count("enqueue") == 3  # first, the duplicate attempt, and "z"
    with pytest.raises(ManagerStoppedError):
        await tm.register_durable_task(DurableTask("email", Email("late")))


def test_bad_durable_options_raise_configuration_error() -> None:
    for bad in (
        {"durable_lease": -1},
        {"durable_poll_interval": 0},
        {"durable_batch_size": 0},
        {"durable_lease_renewal_interval": -5},
        {"durable_backend": "no-scheme"},
        {"durable_backend": 42},
        {"durable_handlers": None},
    ):
        with pytest.raises(ConfigurationError):
            durable_manager(InMemoryDurableBackend(), send, **bad)


async def test_register_durable_task_without_a_backend_is_a_configuration_error() -> None:
    async with TaskManager(max_workers=1) as tm:
        with pytest.raises(ConfigurationError, match="not configured"):
            await tm.register_durable_task(DurableTask("email", Email("x")))


async def test_backend_by_url_and_unknown_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_PLUGINS_AUTOLOAD", "0")
    async with durable_manager("memory://", send) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("url")))
            result = await anext(results)
    assert result.result == "sent to url"
    with pytest.raises(ConfigurationError, match=r"installed: .*memory"):
        await durable_manager("nosuch://host", send).start()


async def test_rate_limiter_and_queue_weights_apply_to_durable_tasks() -> None:
    backend = RecordingBackend()
    order: list[str] = []

    async def record(ctx: TaskContext, payload: Email) -> None:
        order.append(payload.to)

    tm = durable_manager(backend, record, max_workers=1, tasks_per_second=50, queue_weights={"a": 3, "b": 1})
    tm.set_max_workers(0)
    async with tm:
        for queue in ("a", "b"):
            for _ in range(4):
                await tm.register_durable_task(DurableTask("email", Email(queue), queue=queue))
        started = asyncio.get_running_loop().time()
        tm.set_max_workers(1)
        await until(lambda: len(order) == 8)
        elapsed = asyncio.get_running_loop().time() - started
    assert order[:4].count("a") == 3  # weights 3:1 reach the backend's round robin
    assert elapsed >= 7 / 50 - 0.01  # burst 1, then 50 per second: 7 refills at least


async def test_a_backend_keeps_its_own_queue_settings_when_the_manager_is_given_none() -> None:
    ran_in: asyncio.Queue[str] = asyncio.Queue()

    async def record(ctx: TaskContext, payload: Email) -> None:
        ran_in.put_nowait(ctx.task.queue)

    tm = durable_manager("memory://?default_queue=jobs&weights=jobs:3,bulk:1", record)
    async with tm:
        task_id = await tm.register_durable_task(DurableTask("email", Email("x")))
        assert await asyncio.wait_for(ran_in.get(), 10) == "jobs"  # was "default": the manager's own default won
        backend = tm.durable_backend()
        assert isinstance(backend, InMemoryDurableBackend)
        assert backend.queue_settings() == ("jobs", {"jobs": 3, "bulk": 1})  # were overwritten at start
        assert (await tm.durable_outcome(task_id, wait=10)) is not None
        assert [o.id for o in await tm.recent_outcomes()] == [task_id]  # "" reads the backend's default queue


async def test_queue_settings_given_to_the_manager_override_the_backends() -> None:
    backend = InMemoryDurableBackend(default_queue="jobs", queue_weights={"jobs": 3})
    async with durable_manager(backend, send, queue_weights={"bulk": 2}):
        assert backend.queue_settings() == ("jobs", {"bulk": 2})  # the default queue stays the backend's
    backend = InMemoryDurableBackend(default_queue="jobs", queue_weights={"jobs": 3})
    async with durable_manager(backend, send, default_queue="mail") as tm:
        assert backend.queue_settings() == ("mail", {"jobs": 3})
        with tm.subscribe_results(1) as results:
            await tm.register_durable_task(DurableTask("email", Email("y")))
            result = await anext(results)
        assert result.task.queue == "mail"


async def test_cancel_running_durable_task_dead_letters_it_as_cancelled() -> None:
    backend = RecordingBackend()
    started = asyncio.Event()

    async def hang(ctx: TaskContext, payload: Email) -> None:
        started.set()
        await asyncio.Event().wait()

    async with durable_manager(backend, hang) as tm:
        task_id = await tm.register_durable_task(DurableTask("email", Email("x"), retries=3))
        await started.wait()
        assert tm.get_task(task_id).status is TaskStatus.RUNNING
        await tm.cancel_task(task_id)
        await until(lambda: backend.count("fail") == 1)
        assert tm.get_task(task_id).status is TaskStatus.CANCELLED
    [dead] = backend.inner.dead_letters()
    assert "cancelled" in dead.error
    assert backend.count("nack") == 0


async def test_stop_now_hands_running_tasks_back_instead_of_dead_lettering() -> None:
    backend = RecordingBackend()
    started = asyncio.Event()

    async def hang(ctx: TaskContext, payload: Email) -> None:
        started.set()
        await asyncio.Event().wait()

    tm = durable_manager(backend, hang)
    await tm.start()
    task_id = await tm.register_durable_task(DurableTask("email", Email("x")))
    await started.wait()
    await tm.stop_now()
    assert backend.count("release") == 1
    assert backend.count("fail") == 0
    state = backend.inner.get(task_id)
    assert state is not None
    assert state.state == "ready"
    assert state.attempts == 0  # a released delivery does not count


async def test_stop_graceful_lets_running_durable_tasks_finish() -> None:
    backend = RecordingBackend()
    started = asyncio.Event()
    finish = asyncio.Event()

    async def slow(ctx: TaskContext, payload: Email) -> str:
        started.set()
        await finish.wait()
        return "finished"

    tm = durable_manager(backend, slow, max_workers=1)
    await tm.start()
    task_id = await tm.register_durable_task(DurableTask("email", Email("x")))
    await started.wait()
    stopping = asyncio.create_task(tm.stop_graceful(10))
    await asyncio.sleep(0)
    assert not stopping.done()
    finish.set()
    await stopping
    assert tm.get_task(task_id).result == "finished"
    assert backend.count("ack") == 1


async def test_backend_errors_are_retried_and_the_loop_survives(caplog: pytest.LogCaptureFixture) -> None:
    backend = RecordingBackend(dequeue_failures=2)
    with caplog.at_level(logging.WARNING, logger="worker_core.durable"):
        async with durable_manager(backend, send) as tm:
            with tm.subscribe_results(5) as results:
                await tm.register_durable_task(DurableTask("email", Email("later")))
                result = await anext(results)
    assert result.status is TaskStatus.COMPLETED
    assert backend.count("dequeue_error") == 2
    assert sum("dequeue failed" in r.getMessage() for r in caplog.records) == 2


async def test_wakeable_backend_is_waited_on_instead_of_polled() -> None:
    backend = RecordingBackend()
    # A poll interval longer than the test timeout: only wait_for_work can start the task in time.
    async with durable_manager(backend, send, durable_poll_interval=600.0) as tm:
        await asyncio.sleep(0.01)  # the loop is idle, waiting
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("wake")))
            result = await anext(results)
    assert result.result == "sent to wake"


async def test_sync_handlers_and_ctx_attempt_counts_deliveries() -> None:
    backend = RecordingBackend()
    attempts: list[int] = []

    def flaky(ctx: TaskContext, payload: Email) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first delivery fails")
        return "second delivery"

    async with durable_manager(backend, flaky, retry_delay=0.01) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("x"), retries=1))
            result = await anext(results)
    assert result.result == "second delivery"
    assert attempts == [1, 2]
    assert backend.count("nack") == 1


async def test_stop_graceful_hands_back_leases_of_tasks_it_will_not_start() -> None:
    backend = RecordingBackend()
    tm = durable_manager(backend, send, max_workers=1)
    # Right after the lease is taken, take the worker away: the leased task stays waiting in the queue.
    backend.after_dequeue = lambda: tm.set_max_workers(0)
    async with tm:
        task_id = await tm.register_durable_task(DurableTask("email", Email("never started")))
        await until(lambda: tm.metrics().queue_depth == 1)
        assert tm.get_task(task_id).status is TaskStatus.QUEUED
    assert backend.count("release") == 1
    state = backend.inner.get(task_id)
    assert state is not None
    assert state.state == "ready"
    assert state.attempts == 0  # handed back without counting the delivery


async def test_no_lease_is_taken_before_a_rate_limiter_token_is_there() -> None:
    backend = RecordingBackend()
    # One token every 10 s (burst 1): the first task takes the token, the second is not leased meanwhile.
    async with durable_manager(backend, send, max_workers=1, tasks_per_second=0.1) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("first"), priority=0))
            second = await tm.register_durable_task(DurableTask("email", Email("second"), priority=1))
            await anext(results)
            await asyncio.sleep(0.05)  # the loop runs a few times; nothing may be leased
            state = backend.inner.get(second)
            assert state is not None
            assert state.state == "ready"
            assert tm.metrics().queue_depth == 0
    assert backend.count("release") == 0


class MetadataTracer:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def inject(self, metadata: Any) -> None:
        metadata["traceparent"] = "00-producer"

    def start(self, task: Task[Any], ctx: TaskContext) -> Any:
        self.seen.append(ctx.metadata.get("traceparent"))
        return self

    def end(self, error: BaseException | None) -> None:
        return None


async def test_trace_context_travels_with_the_durable_record() -> None:
    backend = RecordingBackend()
    tracer = MetadataTracer()
    async with durable_manager(backend, send) as tm:
        tm.set_tracer(tracer)
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("x"), metadata={"tenant": "a"}))
            await anext(results)
    assert backend.enqueued[0].metadata == {"tenant": "a", "traceparent": "00-producer"}
    assert tracer.seen == ["00-producer"]


async def test_delayed_durable_registration_is_not_delivered_before_its_time() -> None:
    backend = RecordingBackend()
    async with durable_manager(backend, send) as tm:
        with tm.subscribe_results(5) as results:
            started = asyncio.get_running_loop().time()
            later = await tm.register_durable_task_after(DurableTask("email", Email("after")), 0.1)
            run_at = datetime.now(UTC) + timedelta(milliseconds=50)
            at = await tm.register_durable_task_at(DurableTask("email", Email("at")), run_at.replace(tzinfo=None))
            first, second = await anext(results), await anext(results)
            elapsed = asyncio.get_running_loop().time() - started
    assert [first.task.id, second.task.id] == [at, later]
    assert elapsed >= 0.1 - 0.01
    assert backend.enqueued[1].run_at is not None


async def test_codec_by_name_and_protobuf_chosen_by_payload_type() -> None:
    from google.protobuf.wrappers_pb2 import StringValue

    backend = RecordingBackend()

    async def shout(ctx: TaskContext, payload: StringValue) -> str:
        return payload.value.upper()

    handlers = {"email": email_spec(send), "shout": DurableHandlerSpec(StringValue, shout)}
    async with durable_manager(backend, send, durable_handlers=handlers) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("shout", StringValue(value="hi")))
            assert (await anext(results)).result == "HI"
    assert backend.enqueued[0].payload == StringValue(value="hi").SerializeToString()  # raw bytes, as Go

    backend = RecordingBackend()
    async with durable_manager(backend, send, durable_codec="msgpack") as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("packed")))
            assert (await anext(results)).result == "sent to packed"
    assert backend.enqueued[0].payload == msgspec.msgpack.encode(Email("packed"))
    with pytest.raises(ConfigurationError, match="unknown codec"):
        await durable_manager(RecordingBackend(), send, durable_codec="pickle").register_durable_task(
            DurableTask("email", Email("x"))
        )


async def test_typed_registry_as_durable_handlers() -> None:
    from worker_core import TypedDurableRegistry

    registry = TypedDurableRegistry()

    @registry.handler("email")
    async def typed(ctx: TaskContext, payload: Email) -> str:
        return payload.to

    backend = RecordingBackend()
    async with durable_manager(backend, send, durable_handlers=registry) as tm:
        with tm.subscribe_results(5) as results:
            await tm.register_durable_task(DurableTask("email", Email("typed")))
            assert (await anext(results)).result == "typed"
