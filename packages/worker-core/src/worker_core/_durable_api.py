"""The durable half of the public ``TaskManager`` API: options, codec choice and ``register_durable_task*``."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from mypy_extensions import mypyc_attr, trait

from ._durable import DurableRunner
from ._state import emit
from .durable.types import BatchEnqueueBackend, DurableBackend, DurableTask
from .errors import (
    ConfigurationError,
    DurableTaskExistsError,
    HandlerNotFoundError,
    InvalidTaskError,
    ManagerStoppedError,
    PayloadError,
)
from .plugins import Plugins
from .task import to_seconds

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ("DurableApi", "DurableSettings")

logger = logging.getLogger("worker_core.durable")

T = TypeVar("T")


def _seconds(value: object, name: str) -> float:
    try:
        seconds = to_seconds(value, name)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    if seconds is None:
        raise ConfigurationError(f"{name} must be > 0")
    return seconds


class DurableSettings:
    """The validated durable options of one manager (no I/O: the backend URL is resolved at start)."""

    def __init__(
        self,
        backend: DurableBackend | str | None,
        handlers: Any,
        codec: Any,
        lease: float | timedelta,
        poll_interval: float | timedelta,
        batch_size: int | None,
        renewal_interval: float | timedelta | None,
    ) -> None:
        candidate: object = backend
        if candidate is not None and not isinstance(candidate, str) and not isinstance(candidate, DurableBackend):
            raise ConfigurationError("durable_backend must be a DurableBackend or a URL such as 'memory://'")
        if isinstance(backend, str) and "://" not in backend:
            raise ConfigurationError(f"durable_backend URL needs a scheme (like 'memory://'), got {backend!r}")
        self.backend = backend
        self.handlers = handlers if handlers is not None else {}
        self.codec = codec
        self.lease_s = _seconds(lease, "durable_lease")
        self.poll_s = _seconds(poll_interval, "durable_poll_interval")
        batch: object = batch_size
        if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
            raise ConfigurationError(f"durable_batch_size must be an int >= 1 or None, got {batch!r}")
        self.batch_size = batch_size
        renewal: float | None = None
        if renewal_interval is not None:
            renewal = _seconds(renewal_interval, "durable_lease_renewal_interval")
        self.renewal_s = renewal
        if self.backend is not None and not self.handlers:
            raise ConfigurationError("durable_backend needs durable_handlers (name -> DurableHandlerSpec)")


async def register_each(
    register: Callable[[T], Awaitable[uuid.UUID]], tasks: Sequence[T], noun: str
) -> list[uuid.UUID]:
    """Register every task with ``register``; the ids of those accepted, or the rejections raised together.

    Raises:
        ExceptionGroup: one or more tasks were rejected (the others are registered all the same).
    """
    ids: list[uuid.UUID] = []
    errors: list[Exception] = []
    for task in tasks:
        try:
            ids.append(await register(task))
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise rejected(errors, len(tasks), noun)
    return ids


def rejected(errors: Sequence[Exception], total: int, noun: str) -> ExceptionGroup[Exception]:
    """The group ``register_*_tasks`` raises: every rejection, in the order the tasks were given."""
    return ExceptionGroup(f"{len(errors)} of {total} {noun} were not registered", errors)


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


def handler_spec(handlers: Any, name: str) -> Any:
    """The spec registered under ``name`` (``make``, ``fn``), or ``None``: a mapping or a typed registry."""
    try:
        return handlers[name]
    except (KeyError, LookupError):
        return None


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled build: user code may still subclass it
@trait  # a mypyc trait: the compiled TaskManager may have it as a second base
class DurableApi:
    """Mixin: ``register_durable_task*`` and the durable runner's wiring (``TaskManager`` inherits it)."""

    _durable_settings: DurableSettings | None
    _durable: DurableRunner | None
    _plugins: Plugins | None
    _codecs: dict[str, Any]
    _backend_obj: DurableBackend | None
    _backend_owned: bool

    def _init_durable(self, settings: DurableSettings | None, plugins: Plugins | None) -> None:
        self._durable_settings = settings if settings is not None and settings.backend is not None else None
        self._durable = None
        self._plugins = plugins
        self._codecs = {}
        self._backend_obj = None
        self._backend_owned = False  # built here from a URL: this manager closes it at stop

    @property
    def plugins(self) -> Plugins:
        """This manager's plugins (loaded on first use: entry points, built-ins, environment switches)."""
        if self._plugins is None:
            self._plugins = Plugins()
        return self._plugins

    def use_plugin_instrumentation(self, name: str, **options: Any) -> None:
        """Bind this manager to the instrumentation a plugin registered as ``name``.

        Plugins register binders through the ``worker_register_instrumentation`` hook; with worker-otel
        installed, ``tm.use_plugin_instrumentation("otel", provider=meter_provider)`` exports the metrics
        (``provider=None`` unbinds). The binder decides what ``options`` mean.

        Raises:
            ConfigurationError: no plugin registered ``name`` (the error names those that did), or the
                binder rejected ``options``.
        """
        binder = self.plugins.instrumentation().get(name)
        try:
            binder(self, **options)
        except TypeError as exc:
            raise ConfigurationError(f"instrumentation {name!r}: {exc}") from exc

    @property
    def durable(self) -> bool:
        """True when a durable backend is configured."""
        return self._durable_settings is not None

    def _require_durable(self) -> DurableSettings:
        settings = self._durable_settings
        if settings is None:
            raise ConfigurationError("durable backend not configured")
        return settings

    def durable_backend(self) -> DurableBackend:
        """The backend object (a URL is resolved through the backend plugins on first use).

        Raises:
            ConfigurationError: no backend configured, or an unknown URL scheme (the message names those installed).
        """
        if self._backend_obj is None:
            backend = self._require_durable().backend
            if isinstance(backend, str):
                scheme = backend.split("://", 1)[0]
                made = self.plugins.backends().get(scheme)(backend)
                if not isinstance(made, DurableBackend):
                    raise ConfigurationError(f"the {scheme!r} backend factory did not return a DurableBackend")
                backend = made
                self._backend_owned = True
            assert backend is not None
            self._backend_obj = backend
        return self._backend_obj

    async def _open_durable(self) -> DurableBackend:
        """Resolve the backend, connect it when it can be (bad credentials fail here), pick every codec.

        Done at ``start`` so that a misconfigured backend fails ``start`` with its typed error instead of
        warning forever from the lease loop, and so that no plugin loading or codec setup happens between
        leasing a task and running it (that delay counts against the lease).
        """
        backend = self.durable_backend()
        connect = getattr(backend, "connect", None)
        if connect is not None and callable(connect):
            await connect()
        handlers = self._require_durable().handlers
        names = handlers.handlers() if hasattr(handlers, "handlers") else handlers
        for name in names:
            spec = handler_spec(handlers, name)
            if spec is not None:
                self._codec_for(name, spec)
        return backend

    async def _close_durable(self) -> None:
        """Close the backend if this manager built it from a URL (a backend object passed in is the caller's)."""
        backend = self._backend_obj
        if backend is None or not self._backend_owned:
            return
        aclose = getattr(backend, "aclose", None)
        if aclose is None or not callable(aclose):
            return
        try:
            await aclose()
        except Exception:
            logger.warning("closing the durable backend failed", exc_info=True)

    def _codec_for(self, handler: str, spec: Any) -> Any:
        """The codec of ``handler``: the configured one (object or registered name) or chosen by payload type."""
        codec = self._codec_cache_get(handler)
        if codec is not None:
            return codec
        from .durable.codecs import default_codec_for, resolve_codec

        configured = self._require_durable().codec
        if configured is None:
            codec = default_codec_for(spec)
        else:
            codec = resolve_codec(configured, self.plugins.codecs() if isinstance(configured, str) else None)
        self._codecs[handler] = codec
        return codec

    def _codec_cache_get(self, handler: str) -> Any:
        return self._codecs.get(handler)

    def _decode(self, handler: str, data: bytes) -> Any:
        """Decode a leased payload for ``handler`` (raises :class:`PayloadError`)."""
        spec = handler_spec(self._require_durable().handlers, handler)
        if spec is None:
            raise PayloadError(f"no handler {handler!r}")
        codec = self._codec_for(handler, spec)
        try:
            return codec.decode(data, spec)
        except PayloadError:
            raise
        except Exception as exc:  # a third-party codec that breaks the contract
            raise PayloadError(f"payload for handler {handler!r} cannot be decoded: {type(exc).__name__}") from exc

    def _handler_fn(self, handler: str) -> Callable[..., Any] | None:
        spec = handler_spec(self._require_durable().handlers, handler)
        return None if spec is None else spec.fn

    def _make_runner(self, engine: Engine) -> DurableRunner:
        settings = self._require_durable()
        timeout_s = engine._timeout_s
        if settings.renewal_s is None and (timeout_s is None or timeout_s > settings.lease_s):
            logger.info(
                "durable lease (%.1fs) is shorter than the task timeout (%s) and lease renewal is off: "
                "a task running longer than its lease is delivered again (set durable_lease_renewal_interval)",
                settings.lease_s,
                "none" if timeout_s is None else f"{timeout_s:.1f}s",
            )
        return DurableRunner(
            engine,
            self.durable_backend(),
            self._decode,
            self._handler_fn,
            lease_s=settings.lease_s,
            poll_interval_s=settings.poll_s,
            batch_size=settings.batch_size,
            renewal_s=settings.renewal_s,
        )

    # ---------------------------------------------------------------------------------- registration

    def _durable_prepare(self, task: DurableTask) -> DurableTask:
        """Validate and normalise ``task`` into the record the backend stores (a copy)."""
        engine: Any = self
        if not isinstance(task, DurableTask):
            raise InvalidTaskError(f"expected a DurableTask, got {type(task).__name__}")
        if not engine._accepting:
            raise ManagerStoppedError("the task manager is not accepting new tasks")
        settings = self._require_durable()
        handler: object = task.handler
        if not isinstance(handler, str) or not handler:
            raise InvalidTaskError("durable task handler is required")
        spec = handler_spec(settings.handlers, task.handler)
        if spec is None:
            raise HandlerNotFoundError(f"handler {task.handler!r}: durable handler not registered")
        if task.id is not None and not isinstance(task.id, uuid.UUID):
            raise InvalidTaskError(f"durable task id must be a uuid.UUID, got {type(task.id).__name__}")
        for name in ("priority", "weight"):
            value: object = getattr(task, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidTaskError(f"durable task {name} must be an int")
        queue: object = task.queue
        if not isinstance(queue, str):
            raise InvalidTaskError("durable task queue must be a str")
        retries: object = task.retries
        if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
            raise InvalidTaskError(f"durable task retries must be an int >= 0 or None, got {retries!r}")
        try:
            retry_delay = to_seconds(task.retry_delay, "retry_delay")
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(str(exc)) from None
        run_at: object = task.run_at
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidTaskError("durable task run_at must be a datetime")
        codec = self._codec_for(task.handler, spec)
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
                message = self._decode(task.handler, payload)  # validates the bytes now, not at run time
        metadata = dict(task.metadata) if task.metadata else None
        tracer = engine._tracer
        if tracer is not None:
            metadata = metadata or {}
            try:
                tracer.inject(metadata)
            except Exception:
                logger.warning("tracer inject raised for a durable task; ignored", exc_info=True)
        max_retries = engine._max_retries
        return replace(
            task,
            id=task.id or uuid.uuid4(),
            message=message,
            payload=payload,
            queue=task.queue.strip() or engine._default_queue,
            weight=task.weight if task.weight > 0 else 1,
            retries=max_retries if task.retries is None else min(task.retries, max_retries),
            retry_delay=retry_delay if retry_delay is not None else engine._retry_delay_s,
            metadata=metadata,
        )

    async def register_durable_task(self, task: DurableTask) -> uuid.UUID:
        """Encode and enqueue ``task`` on the durable backend; return its id.

        With ``message`` the codec encodes it; with ``payload`` only, the bytes are decoded once to check them.

        Raises:
            ConfigurationError: no durable backend is configured.
            InvalidTaskError: ``task`` is not a :class:`DurableTask` or a field is invalid.
            HandlerNotFoundError: no handler has this name.
            PayloadError: neither payload nor message, or they cannot be encoded/decoded.
            DurableTaskExistsError: the backend already holds a task with this id.
            ManagerStoppedError: the manager is stopping or stopped.
            BackendError: the backend failed (``BackendUnavailableError`` when unreachable).
        """
        record = self._durable_prepare(task)
        await self.durable_backend().enqueue(record)
        return self._durable_registered(task, record)

    def _durable_registered(self, task: DurableTask, record: DurableTask) -> uuid.UUID:
        """Book ``record`` (prepared from ``task``) once the backend stored it: id, counter, instrumentation."""
        task.id = record.id
        assert record.id is not None
        engine: Any = self
        engine._n_scheduled += 1
        if engine._i_scheduled:
            emit(engine._i_scheduled, record)  # the record as stored (queue and retries normalised)
        return record.id

    def _batch_backend(self) -> BatchEnqueueBackend | None:
        """The backend when it can enqueue a batch; ``None`` sends ``register_durable_tasks`` one by one."""
        if self._durable_settings is None:
            return None
        try:
            backend = self.durable_backend()
        except Exception:
            return None  # the one-by-one path raises this error for each task, as it always did
        return backend if isinstance(backend, BatchEnqueueBackend) else None

    async def register_durable_tasks(self, *tasks: DurableTask) -> list[uuid.UUID]:
        """Register the durable tasks; the ids of those accepted, in order; the rejected ones are raised together.

        Every task is checked and encoded as :meth:`register_durable_task` does. When the backend is a
        :class:`~worker_core.durable.BatchEnqueueBackend`, the valid tasks then go to it in one
        ``enqueue_many`` call (the Redis backend: one round trip per 500 tasks) instead of one ``enqueue``
        each: a task whose id is already stored, or repeats an earlier task of the call, is rejected with
        :class:`~worker_core.errors.DurableTaskExistsError` and the others are registered; any other error of
        that call rejects every task it carried (the backend may have stored some of them: registering them
        again reports those as duplicates). Other backends get one ``enqueue`` per task.

        Raises:
            ExceptionGroup: one or more tasks were rejected (the others are enqueued); the errors are those
                of :meth:`register_durable_task`, in the order the tasks were given.
        """
        backend = self._batch_backend() if tasks else None
        if backend is None:
            return await register_each(self.register_durable_task, tasks, "durable tasks")
        outcomes: list[DurableTask | Exception] = []  # per task given: its record, or why it was rejected
        batch: list[DurableTask] = []
        assigned: dict[int, uuid.UUID] = {}  # a task object given twice keeps the id of its first copy
        for task in tasks:
            try:
                record = self._durable_prepare(task)
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
                ids.append(self._durable_registered(task, outcome))
            else:
                errors.append(outcome)
        if errors:
            raise rejected(errors, len(tasks), "durable tasks")
        return ids

    async def register_durable_task_at(self, task: DurableTask, run_at: datetime) -> uuid.UUID:
        """Register ``task`` to be delivered no earlier than ``run_at`` (naive means UTC)."""
        if not isinstance(run_at, datetime):
            raise InvalidTaskError(f"run_at must be a datetime, got {type(run_at).__name__}")
        if not isinstance(task, DurableTask):
            raise InvalidTaskError(f"expected a DurableTask, got {type(task).__name__}")
        task.run_at = run_at
        return await self.register_durable_task(task)

    async def register_durable_task_after(self, task: DurableTask, delay: float | timedelta) -> uuid.UUID:
        """Register ``task`` to be delivered ``delay`` seconds from now (``<= 0``: at once)."""
        seconds: object = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise InvalidTaskError(f"delay must be seconds or a timedelta, got {type(delay).__name__}")
        if not isinstance(task, DurableTask):
            raise InvalidTaskError(f"expected a DurableTask, got {type(task).__name__}")
        if seconds > 0:
            task.run_at = datetime.now(UTC) + timedelta(seconds=seconds)
        return await self.register_durable_task(task)
