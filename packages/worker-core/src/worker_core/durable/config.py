"""A manager's durable settings and what they resolve to: the backend, each handler's spec and codec.

Checked at construction (no I/O); resolved at ``start`` (:meth:`DurableConfig.open`): a backend URL goes
through the backend plugins, a backend that can ``connect()`` is connected (bad credentials fail ``start``
with their typed error), and every handler's codec is picked, so no plugin loading or codec setup sits
between leasing a task and running it (that delay would count against the lease).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, final

from worker_core.errors import ConfigurationError, PayloadError
from worker_core.options import DEFAULT_QUEUE, config_seconds, is_plain_int, to_seconds

from .codecs import DurableCodec, default_codec_for, resolve_codec
from .declare import declared_types
from .outcomes import RESULT_BYTES
from .types import DurableBackend, QueueSettingsBackend

if TYPE_CHECKING:
    from worker_core.options import ManagerOptions
    from worker_core.plugins import Plugins

__all__ = ("RENEWAL_FRACTION", "DurableConfig", "DurableOptions")

logger = logging.getLogger("worker_core.durable")


def _seconds(value: object, name: str) -> float:
    try:
        seconds = to_seconds(value, name)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    if seconds is None:
        raise ConfigurationError(f"{name} must be > 0")
    return seconds


@final
class DurableOptions:
    """The validated durable options of one manager (no I/O: a backend URL is resolved at start)."""

    __slots__ = (
        "backend",
        "batch_size",
        "codec",
        "handlers",
        "lease_s",
        "poll_s",
        "renewal_s",
        "result_max_bytes",
        "result_ttl_s",
    )

    def __init__(
        self,
        backend: DurableBackend | str,
        handlers: Any,
        codec: Any,
        lease: float | timedelta,
        poll_interval: float | timedelta,
        batch_size: int | None,
        renewal_interval: float | timedelta | None,
        result_ttl: float | timedelta | None = None,
        result_max_bytes: int = RESULT_BYTES,
    ) -> None:
        candidate: object = backend
        if not isinstance(candidate, str) and not isinstance(candidate, DurableBackend):
            raise ConfigurationError("durable_backend must be a DurableBackend or a URL such as 'memory://'")
        if isinstance(backend, str) and "://" not in backend:
            raise ConfigurationError(f"durable_backend URL needs a scheme (like 'memory://'), got {backend!r}")
        self.backend = backend
        self.handlers = declared_types(handlers) if handlers is not None else {}
        if not self.handlers:
            raise ConfigurationError("durable_backend needs durable_handlers (name -> DurableHandlerSpec)")
        self.codec = codec
        self.lease_s = _seconds(lease, "durable_lease")
        self.poll_s = _seconds(poll_interval, "durable_poll_interval")
        batch: object = batch_size
        if batch is not None and (not is_plain_int(batch) or batch < 1):
            raise ConfigurationError(f"durable_batch_size must be an int >= 1 or None, got {batch!r}")
        self.batch_size = batch_size
        ttl = config_seconds(result_ttl, "durable_result_ttl", allow_zero=True)
        self.result_ttl_s = ttl or None  # None: outcomes are not stored
        limit: object = result_max_bytes
        if not is_plain_int(limit) or limit < 0:
            raise ConfigurationError(f"durable_result_max_bytes must be an int >= 0, got {limit!r}")
        self.result_max_bytes = result_max_bytes
        self.renewal_s = _renewal(renewal_interval, self.lease_s)


#: The default renewal interval as a fraction of the lease: a third, so that two renewals in a row may fail
#: (a slow or briefly unreachable backend) before the lease runs out.
RENEWAL_FRACTION = 1 / 3


def _renewal(value: object, lease_s: float) -> float | None:
    """The renewal interval: ``None`` (default) a third of the lease, ``0``/``False`` off, else at most half of it."""
    if value is None:
        return lease_s * RENEWAL_FRACTION
    if value is False or (isinstance(value, int | float) and not isinstance(value, bool) and value == 0):
        return None
    if isinstance(value, timedelta) and not value:
        return None
    renewal = _seconds(value, "durable_lease_renewal_interval")
    # Renew at least twice per lease: a renewal that comes after the lease ran out is too late.
    return renewal if renewal < lease_s else lease_s / 2


def handler_spec(handlers: Any, name: str) -> Any:
    """The spec registered under ``name`` (``make``, ``fn``), or ``None``: a mapping or a typed registry."""
    try:
        return handlers[name]
    except (KeyError, LookupError):
        return None


@final
class DurableConfig:
    """The backend, handler specs and codecs of one manager's durable options."""

    __slots__ = ("_backend", "_codecs", "_owned", "_plugins", "_queues", "options")

    def __init__(self, options: DurableOptions, plugins: Callable[[], Plugins]) -> None:
        self.options = options
        self._plugins = plugins  # the manager's plugins, loaded on first use
        self._backend: DurableBackend | None = None
        self._owned = False  # built here from a URL: closed at stop
        self._codecs: dict[str, DurableCodec] = {}
        self._queues: tuple[str, dict[str, int]] | None = None  # queues() of the current backend

    def queues(self, manager: ManagerOptions) -> tuple[str, dict[str, int]]:
        """The default queue and queue weights of durable tasks.

        The manager's where it was given them, else the backend's own (a :class:`QueueSettingsBackend`), else
        ``"default"`` and no weights.
        """
        queues = self._queues
        if queues is None:
            own_default: str = DEFAULT_QUEUE
            own_weights: Mapping[str, int] = {}
            backend = self.backend()
            if isinstance(backend, QueueSettingsBackend):
                own_default, own_weights = backend.queue_settings()
            queues = self._queues = (
                manager.default_queue if manager.default_queue_given else own_default,
                dict(manager.queue_weights if manager.queue_weights_given else own_weights),
            )
        return queues

    def backend(self) -> DurableBackend:
        """The backend object (a URL is resolved through the backend plugins on first use).

        Raises:
            ConfigurationError: an unknown URL scheme (the message names those installed), or a factory that
                does not make a backend.
        """
        if self._backend is None:
            backend = self.options.backend
            if isinstance(backend, str):
                scheme = backend.split("://", 1)[0]
                made = self._plugins().backends().get(scheme)(backend)
                if not isinstance(made, DurableBackend):
                    raise ConfigurationError(f"the {scheme!r} backend factory did not return a DurableBackend")
                backend = made
                self._owned = True
            self._backend = backend
        return self._backend

    async def open(self) -> DurableBackend:
        """Resolve and connect the backend, pick every handler's codec."""
        backend = self.backend()
        connect = getattr(backend, "connect", None)
        if connect is not None and callable(connect):
            await connect()
        handlers = self.options.handlers
        names = handlers.handlers() if hasattr(handlers, "handlers") else handlers
        for name in names:
            spec = handler_spec(handlers, name)
            if spec is not None:
                self.codec_for(name, spec)
        return backend

    async def close(self) -> None:
        """Close the backend if it was built here from a URL (a backend object passed in is the caller's)."""
        backend = self._backend
        if backend is None or not self._owned:
            return
        self._backend = None  # closed: a later start builds a fresh one
        self._queues = None
        aclose = getattr(backend, "aclose", None)
        if aclose is None or not callable(aclose):
            return
        try:
            await aclose()
        except Exception:
            logger.warning("closing the durable backend failed", exc_info=True)

    def spec(self, handler: str) -> Any:
        """The spec that runs ``handler`` here, or ``None`` (none, or only a declaration: it cannot run here)."""
        spec = handler_spec(self.options.handlers, handler)
        return None if spec is None or getattr(spec, "fn", None) is None else spec

    def consumes(self) -> bool:
        """Whether this manager runs any handler (a manager given only declarations leases nothing)."""
        handlers = self.options.handlers
        names = handlers.handlers() if hasattr(handlers, "handlers") else handlers
        return any(self.spec(name) is not None for name in names)

    def payload_spec(self, handler: str) -> Any:
        """What encodes and decodes ``handler``'s payloads (its spec or its declaration), or ``None``."""
        return handler_spec(self.options.handlers, handler)

    def codec_for(self, handler: str, spec: Any) -> DurableCodec:
        """The codec of ``handler``: the configured one (object or registered name) or chosen by payload type."""
        codec = self._codecs.get(handler)
        if codec is not None:
            return codec
        configured = self.options.codec
        if configured is None:
            codec = default_codec_for(spec)
        else:
            codec = resolve_codec(configured, self._plugins().codecs() if isinstance(configured, str) else None)
        self._codecs[handler] = codec
        return codec

    def decode(self, handler: str, data: bytes) -> Any:
        """Decode a payload for ``handler``.

        Raises:
            PayloadError: no such handler, or the bytes do not decode.
        """
        spec = self.payload_spec(handler)
        if spec is None:
            raise PayloadError(f"no handler {handler!r}")
        codec = self.codec_for(handler, spec)
        try:
            return codec.decode(data, spec)
        except PayloadError:
            raise
        except Exception as exc:  # a third-party codec that breaks the contract
            raise PayloadError(f"payload for handler {handler!r} cannot be decoded: {type(exc).__name__}") from exc
