"""Durable task types: a handler's name, payload type and defaults, declared apart from its implementation.

A producer enqueues by the declaration alone, so it imports neither the handler's code nor its
dependencies; the worker implements the same declaration::

    # tasks.py: shared by producers and workers (only the payload type is imported)
    send_email = DurableTaskType("send_email", SendEmail, queue="emails", retries=5)

    # producer
    tm = TaskManager(durable_backend=url, durable_handlers=[send_email])
    await tm.register_durable_task(send_email.task(SendEmail(to="a@b")))

    # worker
    registry = TypedDurableRegistry()

    @registry.handler(send_email)
    async def run(ctx: TaskContext, payload: SendEmail) -> None: ...

A declaration given to ``durable_handlers`` lets a manager encode and enqueue that task; only a handler
(``registry.handler``, a ``DurableHandlerSpec``) lets it run one: a node that leases a task it has only a
declaration for treats it as an unknown handler.
"""

from __future__ import annotations

import typing
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar, final

from worker_core.errors import HandlerPayloadTypeError, HandlerRegistrationError
from worker_core.options import is_plain_int

from .types import DurableTask

__all__ = ("DurableTaskType",)

PayloadT = TypeVar("PayloadT")


@final
@dataclass(frozen=True, slots=True)
class DurableTaskType(Generic[PayloadT]):
    """The declared signature of a durable task: handler ``name``, ``payload_type`` and enqueue defaults.

    Args:
        name: The handler name (what the stored record carries).
        payload_type: The payload's class (a ``msgspec.Struct``, a dataclass, a protobuf message, ``dict``...).
        queue: Default queue of every task made by :meth:`task` (``""``: the manager's default queue).
        priority: Default priority (lower runs first).
        weight: Default weight inside a priority.
        retries: Default retries (``None``: the manager's ``max_retries``).
        retry_delay: Default base retry delay in seconds (``None``: the manager's).

    Raises:
        HandlerRegistrationError: a blank name, a payload type that is not a class, or a bad default.
    """

    name: str
    payload_type: type[PayloadT]
    queue: str = field(default="", kw_only=True)
    priority: int = field(default=1, kw_only=True)
    weight: int = field(default=1, kw_only=True)
    retries: int | None = field(default=None, kw_only=True)
    retry_delay: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        name: object = self.name
        if not isinstance(name, str) or not name.strip():
            raise HandlerRegistrationError("a durable task type needs a handler name")
        if _class_of(self.payload_type) is None:
            raise HandlerRegistrationError(f"{name}: payload_type must be a class, got {self.payload_type!r}")
        queue: object = self.queue
        if not isinstance(queue, str) or not is_plain_int(self.priority) or not is_plain_int(self.weight):
            raise HandlerRegistrationError(f"{name}: queue must be a str, priority and weight ints")
        retries: object = self.retries
        if retries is not None and (not is_plain_int(retries) or retries < 0):
            raise HandlerRegistrationError(f"{name}: retries must be an int >= 0 or None")

    # The spec protocol the manager reads to encode a payload (no ``fn``: a declaration runs nothing).
    @property
    def make(self) -> None:
        """No factory: the codec decodes into ``payload_type``."""
        return None

    @property
    def fn(self) -> None:
        """No implementation: a declaration only lets a manager enqueue."""
        return None

    def task(
        self,
        payload: PayloadT,
        *,
        id: uuid.UUID | None = None,
        queue: str | None = None,
        priority: int | None = None,
        weight: int | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
        run_at: datetime | None = None,
        metadata: dict[str, str] | None = None,
    ) -> DurableTask:
        """A :class:`DurableTask` for ``payload`` with this type's defaults (each argument overrides one).

        Raises:
            HandlerPayloadTypeError: ``payload`` is not a ``payload_type``.
        """
        check = _class_of(self.payload_type)
        assert check is not None  # checked at construction
        if not isinstance(payload, check):
            raise HandlerPayloadTypeError(
                f"durable task {self.name!r} takes a {check.__qualname__} payload, got {type(payload).__qualname__}"
            )
        return DurableTask(
            self.name,
            payload,
            id=id,
            queue=self.queue if queue is None else queue,
            priority=self.priority if priority is None else priority,
            weight=self.weight if weight is None else weight,
            retries=self.retries if retries is None else retries,
            retry_delay=self.retry_delay if retry_delay is None else retry_delay,
            run_at=run_at,
            metadata=metadata,
        )


def _class_of(payload_type: object) -> type | None:
    """The class an isinstance check uses: the type itself, or a generic alias's origin (``dict[str, int]``)."""
    origin = typing.get_origin(payload_type)
    if isinstance(origin, type):
        return origin
    return payload_type if isinstance(payload_type, type) else None


def declared_types(handlers: Any) -> Any:
    """``durable_handlers`` as a mapping: a list or tuple of declarations (and specs by name) becomes a dict."""
    if isinstance(handlers, list | tuple):
        mapping: dict[str, Any] = {}
        for item in handlers:
            if not isinstance(item, DurableTaskType):
                raise HandlerRegistrationError(
                    f"durable_handlers as a list takes DurableTaskType declarations, got {type(item).__name__}"
                )
            if item.name in mapping:
                raise HandlerRegistrationError(f"durable task type {item.name!r} is declared twice")
            mapping[item.name] = item
        return mapping
    return handlers
