"""``register_durable_task(s)``: check a durable task, encode its payload, store it on the backend.

Nothing here runs a task: a stored task is leased later by whichever node's durable runtime gets it.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, final

from worker_core._many import register_each, rejected
from worker_core.errors import DurableTaskExistsError, HandlerNotFoundError, InvalidTaskError, PayloadError
from worker_core.options import is_plain_int, to_seconds
from worker_core.schedules.types import ScheduleBackend, TickResult

from .types import IDEMPOTENCY_KEY_LIMIT, BatchEnqueueBackend, DurableTask, IdempotencyKeyBackend

if TYPE_CHECKING:
    from worker_core.events import EventPipeline
    from worker_core.options import ManagerOptions

    from .config import DurableConfig

__all__ = ("DurableRegistrar", "mark_duplicates")

logger = logging.getLogger("worker_core.durable")


@final
class DurableRegistrar:
    """Validates, encodes and enqueues durable tasks; counts those stored."""

    __slots__ = ("_check_open", "_config", "_events", "_options", "scheduled")

    def __init__(
        self,
        config: DurableConfig,
        options: ManagerOptions,
        events: EventPipeline,
        check_open: Callable[[], None],
    ) -> None:
        self._config = config
        self._options = options
        self._events = events
        self._check_open = check_open  # raises ManagerStoppedError once the manager stops taking work
        self.scheduled = 0

    def prepare(self, task: DurableTask) -> DurableTask:
        """Validate and normalise ``task`` into the record the backend stores (a copy).

        Raises:
            InvalidTaskError, HandlerNotFoundError, PayloadError, ManagerStoppedError: see
                :meth:`worker_core.TaskManager.register_durable_task`.
        """
        if not isinstance(task, DurableTask):
            raise InvalidTaskError(f"expected a DurableTask, got {type(task).__name__}")
        self._check_open()
        handler: object = task.handler
        if not isinstance(handler, str) or not handler:
            raise InvalidTaskError("durable task handler is required")
        spec = self._config.payload_spec(task.handler)
        if spec is None:
            raise HandlerNotFoundError(f"handler {task.handler!r}: durable handler not registered")
        if task.id is not None and not isinstance(task.id, uuid.UUID):
            raise InvalidTaskError(f"durable task id must be a uuid.UUID, got {type(task.id).__name__}")
        for name in ("priority", "weight"):
            if not is_plain_int(getattr(task, name)):
                raise InvalidTaskError(f"durable task {name} must be an int")
        queue: object = task.queue
        if not isinstance(queue, str):
            raise InvalidTaskError("durable task queue must be a str")
        retries: object = task.retries
        max_retries = self._options.max_retries
        if retries is not None and (not is_plain_int(retries) or retries < 0):
            raise InvalidTaskError(f"durable task retries must be an int >= 0 or None, got {retries!r}")
        if task.retries is not None and task.retries > max_retries:
            raise InvalidTaskError(
                f"durable task retries={task.retries} exceeds the manager's max_retries={max_retries}"
            )
        try:
            retry_delay = to_seconds(task.retry_delay, "retry_delay")
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(str(exc)) from None
        key: object = task.idempotency_key
        if key is not None:
            if not isinstance(key, str) or not key.strip() or len(key) > IDEMPOTENCY_KEY_LIMIT:
                raise InvalidTaskError(
                    "durable task idempotency_key must be a non-blank str of at most "
                    f"{IDEMPOTENCY_KEY_LIMIT} characters"
                )
            if not isinstance(self._config.backend(), IdempotencyKeyBackend):
                raise InvalidTaskError(
                    f"durable task idempotency_key: the backend ({type(self._config.backend()).__name__}) "
                    "does not support idempotency keys"
                )
        run_at = task.run_at
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidTaskError("durable task run_at must be a datetime")
        if run_at is not None and run_at.tzinfo is None:
            run_at = run_at.astimezone(UTC)  # a naive datetime is local time
        codec = self._config.codec_for(task.handler, spec)
        payload = task.payload
        message = task.message
        if payload is None:
            if message is None:
                raise PayloadError("durable task payload or message is required")
            try:
                payload = codec.encode(message)
            except Exception as exc:
                raise PayloadError(f"message for handler {task.handler!r} cannot be encoded: {exc}") from exc
        elif not isinstance(payload, bytes | bytearray | memoryview):
            raise PayloadError(f"durable task payload must be bytes, got {type(payload).__name__}")
        else:
            payload = bytes(payload)
            if message is None:
                message = self._config.decode(task.handler, payload)  # validates the bytes now, not at run time
        return replace(
            task,
            id=task.id or uuid.uuid4(),
            message=message,
            payload=payload,
            queue=task.queue.strip() or self._config.queues(self._options)[0],
            weight=task.weight if task.weight > 0 else 1,
            retries=max_retries if task.retries is None else task.retries,
            retry_delay=retry_delay if retry_delay is not None else self._options.retry_delay_s,
            run_at=run_at,
            metadata=_own_copy(self._events.inject(task.metadata), task.metadata),
        )

    async def register(self, task: DurableTask) -> uuid.UUID:
        """Encode and enqueue one durable task; its id."""
        record = self.prepare(task)
        await self._config.backend().enqueue(record)
        return self._registered(task, record)

    async def register_tick(
        self, task: DurableTask, schedule: str, tick_ms: int, ttl: float, node: str = ""
    ) -> TickResult:
        """Encode ``task`` and enqueue it for one schedule tick, exactly once across nodes.

        A :class:`~worker_core.schedules.ScheduleBackend` writes the tick's marker with the task in one step;
        another backend gets a plain ``enqueue`` (a duplicate id then means the tick was enqueued already).
        """
        record = self.prepare(task)
        backend = self._config.backend()
        if isinstance(backend, ScheduleBackend):
            result = await backend.enqueue_tick(record, schedule, tick_ms, ttl, node=node)
        else:
            try:
                await backend.enqueue(record)
                result = TickResult.ENQUEUED
            except DurableTaskExistsError:
                result = TickResult.DUPLICATE
        task.id = record.id
        if result is TickResult.ENQUEUED:
            self._registered(task, record)
        return result

    def _registered(self, task: DurableTask, record: DurableTask) -> uuid.UUID:
        """Book ``record`` (prepared from ``task``) once the backend stored it: id, counter, event."""
        task.id = record.id
        assert record.id is not None
        self.scheduled += 1
        self._events.stored(record)  # the record as stored (queue and retries normalised)
        return record.id

    def _batch_backend(self) -> BatchEnqueueBackend | None:
        try:
            backend = self._config.backend()
        except Exception:
            return None  # the one-by-one path raises this error for each task, as it always did
        return backend if isinstance(backend, BatchEnqueueBackend) else None

    async def register_many(self, tasks: Sequence[DurableTask]) -> list[uuid.UUID]:
        """See :meth:`worker_core.TaskManager.register_durable_tasks`."""
        backend = self._batch_backend() if tasks else None
        if backend is None:
            return await register_each(self.register, tasks, "durable tasks")
        outcomes: list[DurableTask | Exception] = []  # per task given: its record, or why it was rejected
        batch: list[DurableTask] = []
        assigned: dict[int, uuid.UUID] = {}  # a task object given twice keeps the id of its first copy
        for task in tasks:
            try:
                record = self.prepare(task)
            except Exception as exc:
                outcomes.append(exc)
                continue
            if task.id is None:
                assert record.id is not None
                record.id = assigned.setdefault(id(task), record.id)
            outcomes.append(record)
            batch.append(record)
        if batch:
            try:
                await backend.enqueue_many(batch)
            except DurableTaskExistsError as exc:
                if exc.ids:
                    mark_duplicates(outcomes, exc.ids)
                else:  # a backend that does not say which: none can be reported accepted
                    outcomes = [exc if isinstance(o, DurableTask) else o for o in outcomes]
            except Exception as exc:
                outcomes = [exc if isinstance(o, DurableTask) else o for o in outcomes]
        ids: list[uuid.UUID] = []
        errors: list[Exception] = []
        for task, outcome in zip(tasks, outcomes, strict=True):
            if isinstance(outcome, DurableTask):
                ids.append(self._registered(task, outcome))
            else:
                errors.append(outcome)
        if errors:
            raise rejected(errors, len(tasks), "durable tasks", ids)
        return ids


def mark_duplicates(outcomes: list[DurableTask | Exception], duplicate_ids: Sequence[uuid.UUID]) -> None:
    """Replace the records a batch enqueue skipped by a per-task ``DurableTaskExistsError``.

    ``duplicate_ids`` has one entry per skipped task. Of the copies of one id in a batch, the first is the
    one a backend may have stored, so the last ``n`` copies are the ``n`` skipped ones.
    """
    left = Counter(duplicate_ids)
    for index in range(len(outcomes) - 1, -1, -1):
        record = outcomes[index]
        if isinstance(record, DurableTask) and record.id is not None and left[record.id] > 0:
            left[record.id] -= 1
            outcomes[index] = DurableTaskExistsError(f"durable task {record.id} already exists", ids=(record.id,))


def _own_copy(metadata: dict[str, str] | None, given: dict[str, str] | None) -> dict[str, str] | None:
    """The record's metadata, never the caller's own dict."""
    if metadata is None or metadata is not given:
        return metadata
    return dict(metadata) if metadata else None
