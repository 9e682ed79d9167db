"""`workerctl durable enqueue --apply`: what the real backend stores, and that the backend leases it back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path

from ctl_helpers import Ctl
from redis.asyncio import Redis
from worker_redis import RedisDurableBackend


def test_enqueue_stores_go_workers_fields(ctl: Ctl) -> None:
    tid = str(uuid.uuid4())
    payload = '{ "to": "ada@example.com" }'  # kept byte for byte, spaces included
    out = ctl.ok(
        "durable", "enqueue", "--id", tid, "--handler", "send_email", "--queue", "emails", "--payload", payload,
        "--priority", "3", "--retries", "2", "--retry-delay", "1500ms", "--meta", "tenant = acme", "--meta", "k=a=b",
        "--delay", "1m", "--apply",
    )  # fmt: skip
    assert out == f"enqueued durable task id={tid}\n"
    fields = ctl.r.hgetall(ctl.keys.task(tid))
    assert fields[b"payload"] == payload.encode()
    assert fields[b"handler"] == b"send_email"
    assert fields[b"queue"] == b"emails"
    assert (fields[b"priority"], fields[b"weight"], fields[b"retries"]) == (b"3", b"1", b"2")
    assert fields[b"retry_delay_ms"] == b"1500"
    assert json.loads(fields[b"metadata"]) == {"tenant": "acme", "k": "a=b"}
    ready_at = ctl.r.zscore(ctl.keys.ready("emails"), tid)
    assert ready_at is not None
    assert ready_at > time.time() * 1000 + 50_000
    assert ctl.r.sismember(ctl.keys.queues, "emails")


def test_payload_sources_yaml_base64_and_stdin(ctl: Ctl, tmp_path: Path) -> None:
    spec = tmp_path / "task.yaml"
    spec.write_text("to: ada@example.com\ncc: [bob, cy]\n")
    ids = [str(uuid.uuid4()) for _ in range(4)]
    ctl.ok("durable", "enqueue", "--id", ids[0], "--handler", "h", "--payload-file", str(spec), "--apply")
    binary = b"\x08\x96\x01\xff\x00"
    b64 = base64.b64encode(binary).decode()
    ctl.ok("durable", "enqueue", "--id", ids[1], "--handler", "h", "--payload-b64", b64, "--apply")
    ctl.ok("durable", "enqueue", "--id", ids[2], "--handler", "h", "--payload-file", "-", "--apply", input='{"x": 1}')
    ctl.ok("durable", "enqueue", "--id", ids[3], "--handler", "h", "--payload", "a: 1", "--payload-format", "yaml",
           "--run-at", "2030-01-02T03:04:05Z", "--apply")  # fmt: skip
    payloads = [ctl.r.hget(ctl.keys.task(i), "payload") for i in ids]
    assert payloads == [b'{"to":"ada@example.com","cc":["bob","cy"]}', binary, b'{"x": 1}', b'{"a":1}']
    assert ctl.r.zscore(ctl.keys.ready("default"), ids[3]) == 1893553445000


def test_a_duplicate_id_is_exit_1_and_keeps_the_first_task(ctl: Ctl) -> None:
    tid = str(uuid.uuid4())
    ctl.ok("durable", "enqueue", "--id", tid, "--handler", "h", "--payload", '{"n":1}', "--apply")
    before = ctl.state()
    result = ctl.run("durable", "enqueue", "--id", tid, "--handler", "h", "--payload", '{"n":2}', "--apply")
    assert result.exit_code == 1
    assert result.stderr == f"Error: durable task already exists: {tid}\n"
    assert ctl.state() == before


def test_the_backend_leases_what_workerctl_enqueued(ctl: Ctl) -> None:
    tid = str(uuid.uuid4())
    ctl.ok("durable", "enqueue", "--id", tid, "--handler", "resize", "--queue", "img", "--payload-b64", "AAEC",
           "--retries", "1", "--apply")  # fmt: skip

    async def lease() -> tuple[str, bytes | None, int, str]:
        client = Redis.from_url(ctl.url)
        try:
            backend = RedisDurableBackend(client, prefix=ctl.prefix)
            (got,) = await backend.dequeue(1, 30.0)
            return str(got.task.id), got.task.payload, got.max_retries, got.task.queue
        finally:
            await client.aclose()

    assert asyncio.run(lease()) == (tid, b"\x00\x01\x02", 1, "img")
    assert ctl.json("durable", "get", "--id", tid)["status"] == "processing"
