"""Durable codecs: how a payload object becomes the bytes a backend stores, and back. No pickle anywhere.

* :class:`ProtobufCodec` (``"protobuf"``) stores the raw message bytes, exactly like go-worker's
  ``ProtoDurableCodec`` (no envelope, no type URL), so Go and Python nodes can share a queue.
  protobuf is an optional dependency (``worker-core[protobuf]``), imported on first use.
* :class:`MsgspecJsonCodec` (``"json"``) and :class:`MsgspecMsgpackCodec` (``"msgpack"``) encode
  ``msgspec.Struct`` objects or plain data, and decode into the handler's payload type (validated by
  msgspec), or into plain data when the handler is untyped.

``decode(data, spec)`` takes the handler spec (anything with ``make`` and optionally ``payload_type``,
see :class:`~worker_core.durable.handlers.DurableHandlerSpec`) to know what to build. Every failure
raises :class:`~worker_core.errors.PayloadError` with the codec's exception as ``__cause__``.

When the manager has no codec configured, :func:`default_codec_for` picks per handler: protobuf when
the handler's payload is a protobuf message, msgspec JSON otherwise. :func:`resolve_codec` turns a
codec object or a registered name into a codec.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, final, runtime_checkable

import msgspec

from worker_core.errors import ConfigurationError, PayloadError

from .handlers import spec_payload_type

if TYPE_CHECKING:
    from worker_core.registry import Registry

__all__ = (
    "DurableCodec",
    "MsgspecJsonCodec",
    "MsgspecMsgpackCodec",
    "PayloadSpec",
    "ProtobufCodec",
    "builtin_codecs",
    "default_codec_for",
    "resolve_codec",
)


class PayloadSpec(Protocol):
    """What a codec needs from a handler spec: ``make`` (may be ``None``); ``payload_type`` is read if present."""

    @property
    def make(self) -> Callable[[], Any] | None:
        """Returns an empty payload object, or is ``None``."""
        ...


@runtime_checkable
class DurableCodec(Protocol):
    """Turns payload objects into bytes and back; go-worker's DurableCodec.

    ``name`` is the registered name (``"protobuf"``, ``"json"``, ``"msgpack"``). Both methods raise
    :class:`~worker_core.errors.PayloadError` on failure.
    """

    name: str

    def encode(self, obj: Any) -> bytes:
        """Encode a payload object (go-worker's Marshal)."""
        ...

    def decode(self, data: bytes, spec: PayloadSpec) -> Any:
        """Decode ``data`` into the payload type of ``spec`` (go-worker's Unmarshal into ``Make()``)."""
        ...


def _protobuf_message_class() -> type[Any]:
    try:
        from google.protobuf.message import Message
    except ImportError as exc:
        raise ConfigurationError(
            "the protobuf codec needs the protobuf package: pip install 'worker-core[protobuf]'"
        ) from exc
    return Message


def _is_protobuf_type(value: object) -> bool:
    module = sys.modules.get("google.protobuf.message")
    return module is not None and isinstance(value, type) and issubclass(value, module.Message)


@final
class ProtobufCodec:
    """Raw protobuf message bytes: ``SerializeToString`` / ``ParseFromString`` into ``make()``.

    Raises:
        ConfigurationError: at construction, when protobuf is not installed.
    """

    name = "protobuf"

    def __init__(self) -> None:
        self._message = _protobuf_message_class()
        from google.protobuf.message import Error as ProtobufError

        # DecodeError and EncodeError derive from protobuf's Error; the pure-Python runtime may raise the others.
        self._errors: tuple[type[Exception], ...] = (ProtobufError, ValueError, TypeError, RuntimeError)

    def encode(self, obj: Any) -> bytes:
        """Serialize a protobuf message (all required fields of proto2 messages must be set)."""
        if not isinstance(obj, self._message):
            raise PayloadError(f"marshal protobuf message: expected a protobuf message, got {type(obj).__qualname__}")
        try:
            return bytes(obj.SerializeToString())
        except self._errors as exc:
            raise PayloadError(f"marshal protobuf message: {exc}") from exc

    def decode(self, data: bytes, spec: PayloadSpec) -> Any:
        """Parse ``data`` into a fresh ``spec.make()`` (or ``spec.payload_type()``)."""
        make: Callable[[], Any] | None = spec.make
        if make is None:
            payload_type: Any = getattr(spec, "payload_type", None)
            if not _is_protobuf_type(payload_type):
                raise PayloadError("unmarshal protobuf message: the handler declares no protobuf message type")
            message = payload_type()
        else:
            message = make()
        if not isinstance(message, self._message):
            raise PayloadError(
                f"unmarshal protobuf message: make() returned {type(message).__qualname__}, not a protobuf message"
            )
        try:
            message.ParseFromString(data)
        except self._errors as exc:
            raise PayloadError(f"unmarshal protobuf message: {exc}") from exc
        return message


class _MsgspecCodec:
    """Shared logic of the msgspec codecs: one encoder, one cached decoder per payload type."""

    name = ""
    _error_kind = ""

    def __init__(self) -> None:
        self._encode: Callable[[Any], bytes] = self._make_encoder()
        self._untyped: Callable[[bytes], Any] = self._make_decoder(Any)
        self._decoders: dict[Any, Callable[[bytes], Any]] = {}

    def _make_encoder(self) -> Callable[[Any], bytes]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _make_decoder(self, payload_type: Any) -> Callable[[bytes], Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode(self, obj: Any) -> bytes:
        """Encode a ``msgspec.Struct`` or plain data (dicts, lists, str, int, float, bool, None, bytes...)."""
        try:
            return self._encode(obj)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise PayloadError(f"{self._error_kind} encode: {exc}") from exc

    def decode(self, data: bytes, spec: PayloadSpec) -> Any:
        """Decode into the spec's payload type (validated), or into plain data when the spec is untyped."""
        try:
            payload_type = spec_payload_type(spec)
        except Exception as exc:
            raise PayloadError(f"{self._error_kind} decode: make() raised {exc!r}") from exc
        decoder = self._untyped if payload_type is None else self._decoder(payload_type)
        try:
            return decoder(data)
        except (msgspec.DecodeError, TypeError, ValueError) as exc:
            raise PayloadError(f"{self._error_kind} decode: {exc}") from exc

    def _decoder(self, payload_type: Any) -> Callable[[bytes], Any]:
        decoder = self._decoders.get(payload_type)
        if decoder is None:
            try:
                decoder = self._make_decoder(payload_type)
            except TypeError as exc:  # msgspec cannot decode into this type
                raise PayloadError(f"{self._error_kind} decode: unsupported payload type {payload_type!r}") from exc
            self._decoders[payload_type] = decoder
        return decoder


@final
class MsgspecJsonCodec(_MsgspecCodec):
    """JSON through msgspec; ``bytes`` fields travel as base64 strings."""

    name = "json"
    _error_kind = "json"

    def _make_encoder(self) -> Callable[[Any], bytes]:
        return msgspec.json.Encoder().encode

    def _make_decoder(self, payload_type: Any) -> Callable[[bytes], Any]:
        return msgspec.json.Decoder(payload_type).decode


@final
class MsgspecMsgpackCodec(_MsgspecCodec):
    """MessagePack through msgspec: compact, binary-safe."""

    name = "msgpack"
    _error_kind = "msgpack"

    def _make_encoder(self) -> Callable[[Any], bytes]:
        return msgspec.msgpack.Encoder().encode

    def _make_decoder(self, payload_type: Any) -> Callable[[bytes], Any]:
        return msgspec.msgpack.Decoder(payload_type).decode


_shared: dict[str, DurableCodec] = {}


def _shared_codec(name: str, factory: Callable[[], DurableCodec]) -> DurableCodec:
    codec = _shared.get(name)
    if codec is None:
        codec = _shared[name] = factory()
    return codec


def default_codec_for(spec: PayloadSpec) -> DurableCodec:
    """The codec for a handler when none is configured: protobuf for a protobuf payload, msgspec JSON otherwise.

    Returns shared instances (codecs are stateless apart from caches), so call it once per handler.

    Raises:
        PayloadError: ``spec.make()`` raised.
    """
    try:
        payload_type = spec_payload_type(spec)
    except Exception as exc:
        raise PayloadError(f"make() raised {exc!r}") from exc
    if _is_protobuf_type(payload_type):
        return _shared_codec("protobuf", ProtobufCodec)
    return _shared_codec("json", MsgspecJsonCodec)


def builtin_codecs() -> dict[str, Callable[[], DurableCodec]]:
    """The built-in codec factories by name (what the built-in plugin registers)."""
    return {"protobuf": ProtobufCodec, "json": MsgspecJsonCodec, "msgpack": MsgspecMsgpackCodec}


def resolve_codec(codec: DurableCodec | str, registry: Registry[Any] | None = None) -> DurableCodec:
    """A codec from an object or a registered name (``"protobuf"``, ``"json"``, ``"msgpack"``, or a plugin's).

    Args:
        codec: A codec object (returned as is) or a name looked up in ``registry``.
        registry: The codec registry filled by ``worker_register_codecs``; ``None`` means the built-ins only.

    Raises:
        ConfigurationError: unknown name (the message lists the installed ones), an object that is not a
            codec, or a codec whose dependency is missing (protobuf).
    """
    if isinstance(codec, str):
        if registry is None:
            factories = builtin_codecs()
            factory = factories.get(codec.strip().lower())
            if factory is None:
                known = ", ".join(sorted(factories))
                raise ConfigurationError(f"unknown codec {codec!r}; installed: {known}")
        else:
            factory = registry.get(codec)
        codec = factory()
    if not isinstance(codec, DurableCodec):
        raise ConfigurationError(
            f"durable_codec must be a codec (name, encode, decode), got {type(codec).__qualname__}"
        )
    return codec
