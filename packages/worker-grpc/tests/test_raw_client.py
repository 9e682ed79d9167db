"""A go-worker-style client with one shared token, written without our client or our generated messages.

The calls are grpc generic calls carrying protobuf bytes encoded by hand from the field numbers of
go-worker's ``worker.proto`` (what grpcurl or a Go client sends): a client like that keeps working
unchanged against a server whose auth hook returns principals.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from conftest import NO_PROXY, ServeFactory
from worker_grpc import BearerTokenAuth

SERVICE = "/worker.v1.WorkerService/"
SHARED = (("authorization", "Bearer shared-token"),)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3 | 0) + varint(value)


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of a message: varints as ints, length-delimited fields as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = read_varint(data, pos)
            yield number, value
        elif kind == 2:
            size, pos = read_varint(data, pos)
            yield number, data[pos : pos + size]
            pos += size
        else:
            raise AssertionError(f"unexpected wire type {kind}")


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def string_value(text: str) -> bytes:
    """A google.protobuf.Any holding a google.protobuf.StringValue (value = field 1)."""
    inner = field_bytes(1, text.encode())
    return field_bytes(1, b"type.googleapis.com/google.protobuf.StringValue") + field_bytes(2, inner)


def task(name: str, payload: bytes | None = None) -> bytes:
    """worker.v1.Task: name = 1, payload = 6 (Any)."""
    return field_bytes(1, name.encode()) + (field_bytes(6, payload) if payload is not None else b"")


def strings(data: bytes, number: int) -> list[str]:
    return [v.decode() for n, v in fields(data) if n == number and isinstance(v, bytes)]


def identity(data: bytes) -> bytes:
    return data


@pytest.fixture
async def raw_channel(serve: ServeFactory) -> AsyncIterator[grpc.aio.Channel]:
    served = await serve(auth=BearerTokenAuth({"shared-token"}))  # go-worker's WithGRPCAuth with one token
    async with grpc.aio.insecure_channel(served.address, options=NO_PROXY) as chan:
        yield chan


def unary(chan: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return chan.unary_unary(SERVICE + method, request_serializer=identity, response_deserializer=identity)


async def test_a_shared_token_client_registers_streams_gets_and_cancels(raw_channel: grpc.aio.Channel) -> None:
    request = field_bytes(1, task("string", string_value("one"))) + field_bytes(1, task("string", string_value("two")))
    reply = await unary(raw_channel, "RegisterTasks")(request, metadata=SHARED, timeout=10)
    ids = strings(reply, 1)  # RegisterTasksResponse.ids = 1
    assert len(ids) == 2
    assert all(str(uuid.UUID(i)) == i for i in ids)

    stream = raw_channel.unary_stream(
        SERVICE + "StreamResults", request_serializer=identity, response_deserializer=identity
    )
    stream_request = b"".join(field_bytes(1, i.encode()) for i in ids) + field_varint(2, 1)  # close_on_completion
    outputs = {}
    async for message in stream(stream_request, metadata=SHARED, timeout=20):
        assert isinstance(message, bytes)
        (task_id,) = strings(message, 1)
        outputs[task_id] = strings(message, 2)[0] if strings(message, 2) else ""
    assert outputs == {ids[0]: "one", ids[1]: "two"}

    got = await unary(raw_channel, "GetTask")(field_bytes(1, ids[0].encode()), metadata=SHARED, timeout=10)
    assert strings(got, 1) == [ids[0]]
    assert strings(got, 2) == ["string"]  # name
    assert strings(got, 3) == ["Completed"]  # go-worker's status name
    assert strings(got, 4) == ["one"]  # output

    cancelled = await unary(raw_channel, "CancelTask")(field_bytes(1, ids[1].encode()), metadata=SHARED, timeout=10)
    assert cancelled == b""  # CancelTaskResponse is empty; a finished task stays as it is


async def test_the_shared_token_is_still_required(raw_channel: grpc.aio.Channel) -> None:
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(raw_channel, "GetTask")(field_bytes(1, str(uuid.uuid4()).encode()), metadata=metadata)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await unary(raw_channel, "GetTask")(field_bytes(1, str(uuid.uuid4()).encode()), metadata=SHARED)
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND  # authenticated: an unknown id
