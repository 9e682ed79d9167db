"""Durable task types: a producer enqueues by declaration alone; a worker implements the declaration."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from core_helpers import GUARD
from worker_core import (
    DurableTaskType,
    HandlerNotFoundError,
    HandlerPayloadTypeError,
    HandlerRegistrationError,
    TaskContext,
    TaskManager,
    TypedDurableRegistry,
)
from worker_core.testing import InMemoryDurableBackend


class Email(msgspec.Struct):
    to: str


class Sms(msgspec.Struct):
    number: str


send_email = DurableTaskType("send_email", Email, queue="mail", priority=3, retries=2, retry_delay=0.5)


async def test_a_producer_enqueues_by_declaration_and_a_worker_runs_it() -> None:
    backend = InMemoryDurableBackend()
    producer = TaskManager(durable_backend=backend, durable_handlers=[send_email])  # never started
    task_id = await producer.register_durable_task(send_email.task(Email(to="ada@example.org")))
    ids = await producer.register_durable_tasks(
        send_email.task(Email(to="b@example.org"), priority=0), send_email.task(Email(to="c@example.org"))
    )
    assert backend.ready_count("mail") == 3

    registry = TypedDurableRegistry()
    seen: dict[str, tuple[str, int]] = {}
    all_done = asyncio.Event()

    @registry.handler(send_email)
    async def deliver(ctx: TaskContext, payload: Email) -> str:
        seen[payload.to] = (ctx.task.queue, ctx.task.priority)
        if len(seen) == 3:
            all_done.set()
        return payload.to

    async with TaskManager(durable_backend=backend, durable_handlers=registry.handlers()):
        async with asyncio.timeout(GUARD):
            await all_done.wait()
    assert seen == {"ada@example.org": ("mail", 3), "b@example.org": ("mail", 0), "c@example.org": ("mail", 3)}
    assert len({task_id, *ids}) == 3


def test_task_checks_the_payload_type_and_applies_defaults() -> None:
    task = send_email.task(Email(to="x"), queue="urgent", retries=0)
    assert (task.handler, task.queue, task.priority, task.retries, task.retry_delay) == (
        "send_email",
        "urgent",
        3,
        0,
        0.5,
    )
    with pytest.raises(HandlerPayloadTypeError, match="takes a Email payload, got Sms"):
        send_email.task(Sms(number="1"))  # type: ignore[arg-type]


def test_bad_declarations_are_rejected() -> None:
    with pytest.raises(HandlerRegistrationError):
        DurableTaskType("", Email)
    with pytest.raises(HandlerRegistrationError):
        DurableTaskType("x", "Email")  # type: ignore[arg-type]
    with pytest.raises(HandlerRegistrationError):
        DurableTaskType("x", Email, retries=-1)
    with pytest.raises(HandlerRegistrationError, match="declared twice"):
        TaskManager(durable_backend="memory://", durable_handlers=[send_email, send_email])
    with pytest.raises(HandlerRegistrationError, match="DurableTaskType"):
        TaskManager(durable_backend="memory://", durable_handlers=["send_email"])


def test_an_implementation_must_take_the_declared_payload() -> None:
    registry = TypedDurableRegistry()
    with pytest.raises(HandlerRegistrationError, match="the declaration says"):

        @registry.handler(send_email)
        async def wrong(ctx: TaskContext, payload: Sms) -> None: ...

    assert "send_email" not in registry


def test_handler_defaults_make_a_declaration() -> None:
    registry = TypedDurableRegistry()

    @registry.handler("send_sms", queue="sms", retries=4)
    def text(ctx: TaskContext, payload: Sms) -> None: ...

    @registry.handler("anything")
    def untyped(ctx: TaskContext, payload: Any) -> None: ...

    declared = registry.task_type("send_sms")
    assert (declared.payload_type, declared.queue, declared.retries) == (Sms, "sms", 4)
    assert declared.task(Sms(number="1")).queue == "sms"
    with pytest.raises(HandlerNotFoundError):
        registry.task_type("anything")  # untyped: nothing to declare
    with pytest.raises(HandlerNotFoundError):
        registry.task_type("missing")


async def test_a_started_manager_with_only_declarations_leases_nothing() -> None:
    backend = InMemoryDurableBackend()
    async with TaskManager(durable_backend=backend, durable_handlers=[send_email]) as producer:
        await producer.register_durable_task(send_email.task(Email(to="x@example.org")))
        assert producer._engine.supervisor.task("durable-lease") is None  # white box: no lease loop at all
        await asyncio.sleep(0)
        assert backend.leased_count() == 0
        assert backend.ready_count() == 1
