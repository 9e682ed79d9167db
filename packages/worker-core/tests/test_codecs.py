from __future__ import annotations

import sys
from typing import Any

import msgspec
import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from google.protobuf.message import DecodeError
from worker_core.durable import (
    DurableCodec,
    DurableHandlerSpec,
    MsgspecJsonCodec,
    MsgspecMsgpackCodec,
    ProtobufCodec,
    builtin_codecs,
    default_codec_for,
    resolve_codec,
)
from worker_core.durable._plugin import memory_backend_from_url
from worker_core.errors import ConfigurationError, PayloadError, PluginError, WorkerError
from worker_core.plugins import Plugins
from worker_core.testing import InMemoryDurableBackend


class Email(msgspec.Struct):
    to: str
    subject: str
    attachment: bytes = b""
    tags: list[str] = []


def _noop(ctx: Any, payload: Any) -> None:
    return None


def spec(make: Any = None, payload_type: Any = None) -> DurableHandlerSpec[Any]:
    return DurableHandlerSpec(make, _noop, payload_type=payload_type)


# -- protobuf -------------------------------------------------------------------------------------------


def test_protobuf_stores_raw_message_bytes_like_go() -> None:
    codec = ProtobufCodec()
    message = wrappers_pb2.StringValue(value="hello")
    data = codec.encode(message)
    assert data == b"\n\x05hello"  # field 1, length 5: no envelope, no type URL
    decoded = codec.decode(data, spec(wrappers_pb2.StringValue))
    assert isinstance(decoded, wrappers_pb2.StringValue)
    assert decoded.value == "hello"


def test_protobuf_round_trips_a_struct_message() -> None:
    codec = ProtobufCodec()
    message = struct_pb2.Struct()
    message.update({"user": "ada", "n": 3.0, "nested": {"ok": True}, "list": [1.0, "two"]})
    decoded = codec.decode(codec.encode(message), spec(struct_pb2.Struct))
    assert decoded == message


def test_protobuf_decodes_into_a_fresh_message_each_time() -> None:
    codec = ProtobufCodec()
    handler = spec(wrappers_pb2.Int64Value)
    first = codec.decode(codec.encode(wrappers_pb2.Int64Value(value=7)), handler)
    second = codec.decode(b"", handler)
    assert first.value == 7
    assert second.value == 0
    assert first is not second


def test_protobuf_decodes_with_payload_type_only() -> None:
    codec = ProtobufCodec()
    decoded = codec.decode(b"\x08\x2a", spec(payload_type=wrappers_pb2.Int64Value))
    assert decoded.value == 42


def test_protobuf_corrupt_bytes_raise_payload_error_with_cause() -> None:
    codec = ProtobufCodec()
    with pytest.raises(PayloadError, match="unmarshal protobuf message") as info:
        codec.decode(b"\xff\xff\xff", spec(wrappers_pb2.StringValue))
    assert isinstance(info.value.__cause__, DecodeError)


def test_protobuf_encode_rejects_non_messages() -> None:
    with pytest.raises(PayloadError, match="expected a protobuf message"):
        ProtobufCodec().encode({"not": "a message"})


def test_protobuf_decode_rejects_make_returning_non_message() -> None:
    with pytest.raises(PayloadError, match="not a protobuf message"):
        ProtobufCodec().decode(b"", spec(dict))
    with pytest.raises(PayloadError, match="no protobuf message type"):
        ProtobufCodec().decode(b"", spec(payload_type=Email))


def test_protobuf_missing_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.protobuf.message", None)
    with pytest.raises(ConfigurationError, match=r"worker-core\[protobuf\]"):
        ProtobufCodec()


# -- msgspec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", [MsgspecJsonCodec(), MsgspecMsgpackCodec()], ids=["json", "msgpack"])
def test_msgspec_struct_with_required_fields_round_trips(codec: DurableCodec) -> None:
    email = Email("a@example.com", "hi", attachment=b"\x00\xff\xfe", tags=["x"])
    decoded = codec.decode(codec.encode(email), spec(payload_type=Email))
    assert decoded == email


@pytest.mark.parametrize("codec", [MsgspecJsonCodec(), MsgspecMsgpackCodec()], ids=["json", "msgpack"])
def test_msgspec_plain_data_typed_by_make_and_untyped(codec: DurableCodec) -> None:
    data = {"user": "ada", "n": 3, "items": [1, 2, 3], "none": None}
    assert codec.decode(codec.encode(data), spec(dict)) == data
    assert codec.decode(codec.encode(data), spec()) == data
    assert codec.decode(codec.encode([1, "two"]), spec()) == [1, "two"]


@pytest.mark.parametrize("codec", [MsgspecJsonCodec(), MsgspecMsgpackCodec()], ids=["json", "msgpack"])
def test_msgspec_generic_payload_type_is_validated(codec: DurableCodec) -> None:
    handler = spec(payload_type=dict[str, int])
    assert codec.decode(codec.encode({"a": 1}), handler) == {"a": 1}
    with pytest.raises(PayloadError) as info:
        codec.decode(codec.encode({"a": "not an int"}), handler)
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


def test_json_wrong_shape_raises_payload_error() -> None:
    codec = MsgspecJsonCodec()
    with pytest.raises(PayloadError, match="json decode") as info:
        codec.decode(b'{"to": "a@example.com"}', spec(payload_type=Email))  # subject is required
    assert isinstance(info.value.__cause__, msgspec.ValidationError)


@pytest.mark.parametrize(
    ("codec", "data"),
    [(MsgspecJsonCodec(), b"{not json"), (MsgspecMsgpackCodec(), b"\xc1"), (MsgspecJsonCodec(), b"\xff\xfe")],
    ids=["json", "msgpack", "json-binary"],
)
def test_msgspec_bad_bytes_raise_payload_error(codec: DurableCodec, data: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        codec.decode(data, spec())
    assert isinstance(info.value.__cause__, msgspec.DecodeError)
    assert isinstance(info.value, WorkerError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("codec", [MsgspecJsonCodec(), MsgspecMsgpackCodec()], ids=["json", "msgpack"])
def test_msgspec_encode_of_unsupported_object_raises_payload_error(codec: DurableCodec) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode(object())
    assert info.value.__cause__ is not None
    with pytest.raises(PayloadError):
        codec.encode(wrappers_pb2.StringValue(value="x"))


def test_msgspec_payload_type_it_cannot_build_raises_payload_error() -> None:
    class Opaque:
        pass

    with pytest.raises(PayloadError, match="json decode"):
        MsgspecJsonCodec().decode(b"{}", spec(payload_type=Opaque))


def test_msgspec_make_raising_is_a_payload_error() -> None:
    class Flaky:
        make = staticmethod(lambda: (_ for _ in ()).throw(RuntimeError("nope")))

    with pytest.raises(PayloadError, match="make\\(\\) raised"):
        MsgspecJsonCodec().decode(b"{}", Flaky())


# -- selection and resolution ---------------------------------------------------------------------------


def test_default_codec_is_protobuf_for_messages_and_json_otherwise() -> None:
    proto = default_codec_for(spec(wrappers_pb2.StringValue))
    assert isinstance(proto, ProtobufCodec)
    assert proto is default_codec_for(spec(payload_type=struct_pb2.Struct))  # shared instance
    assert isinstance(default_codec_for(spec(payload_type=Email)), MsgspecJsonCodec)
    assert isinstance(default_codec_for(spec(dict)), MsgspecJsonCodec)
    assert isinstance(default_codec_for(spec()), MsgspecJsonCodec)


def test_resolve_codec_by_builtin_name_and_object() -> None:
    assert resolve_codec("protobuf").name == "protobuf"
    assert isinstance(resolve_codec("JSON"), MsgspecJsonCodec)
    assert isinstance(resolve_codec(" msgpack "), MsgspecMsgpackCodec)
    codec = MsgspecMsgpackCodec()
    assert resolve_codec(codec) is codec
    assert set(builtin_codecs()) == {"protobuf", "json", "msgpack"}


def test_resolve_codec_unknown_name_lists_installed() -> None:
    with pytest.raises(ConfigurationError, match="installed: json, msgpack, protobuf"):
        resolve_codec("yaml")


def test_resolve_codec_rejects_non_codec_objects() -> None:
    with pytest.raises(ConfigurationError, match="must be a codec"):
        resolve_codec(object())  # type: ignore[arg-type]


def test_resolve_codec_through_the_plugin_registry() -> None:
    class UpperCodec:
        name = "upper"

        def encode(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def decode(self, data: bytes, spec: Any) -> Any:
            return data.decode()

    registry = Plugins(autoload=False).codecs()
    assert {"protobuf", "json", "msgpack"} <= set(registry.names())
    registry.add("upper", UpperCodec)
    assert isinstance(resolve_codec("msgpack", registry), MsgspecMsgpackCodec)
    assert resolve_codec("upper", registry).encode("a") == b"A"
    with pytest.raises(ConfigurationError, match="installed: json, msgpack, protobuf, upper"):
        resolve_codec("yaml", registry)
    with pytest.raises(PluginError):
        registry.add("json", MsgspecJsonCodec)


# -- the memory:// backend scheme -----------------------------------------------------------------------


def test_memory_scheme_is_registered_and_builds_fresh_backends() -> None:
    factory = Plugins(autoload=False).backends().get("memory")
    first, second = factory("memory://"), factory("memory://")
    assert isinstance(first, InMemoryDurableBackend)
    assert first is not second


def test_memory_url_options() -> None:
    backend = memory_backend_from_url("memory://?default_queue=jobs&weights=critical:3,bulk:1")
    assert backend._default_queue == "jobs"
    assert backend._weights == {"critical": 3, "bulk": 1}


@pytest.mark.parametrize(
    "url",
    [
        "memory://somewhere",
        "memory:///path",
        "memory://?colour=red",
        "memory://?weights=a:0",
        "memory://?weights=a:x",
        "memory://?weights=a",
        "memory://?default_queue=",
        "redis://localhost",
    ],
)
def test_memory_url_errors_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        memory_backend_from_url(url)
