"""worker_redis.admin against a private redis-server (one per module, a fresh prefix per test)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from worker_core.errors import BackendUnavailableError, ConfigurationError, TaskNotFoundError
from worker_redis.admin import RedisAdmin, SnapshotEntry, TaskState
from worker_redis.keys import Keys
from worker_redis.testing import RedisServer, free_port, go_worker_task_fields, redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
async def admin(server: RedisServer) -> AsyncIterator[RedisAdmin]:
    adm = RedisAdmin.from_url(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    try:
        yield adm
    finally:
        await adm.aclose()


async def put(
    admin: RedisAdmin,
    *,
    state: str = "ready",
    queue: str = "default",
    handler: str = "send",
    payload: bytes = b'{"a":1}',
    retries: int = 2,
    attempts: int = 0,
    score: int | None = None,
    task_id: str | None = None,
    dead_at: int | None = None,
) -> str:
    """Write a task exactly as go-worker's enqueue (and dequeue/fail) scripts leave it."""
    tid = task_id or str(uuid.uuid4())
    k: Keys = admin.keys
    now = int(time.time() * 1000)
    c: Any = admin.client
    await c.hset(
        k.task(tid),
        mapping=go_worker_task_fields(
            handler=handler,
            payload=payload,
            queue=queue,
            retries=retries,
            attempts=attempts,
            now_ms=now,
            metadata=json.dumps({"k": "v"}),
        ),
    )
    await c.sadd(k.queues, queue)
    if state == "ready":
        await c.zadd(k.ready(queue), {tid: score if score is not None else now})
    elif state == "processing":
        await c.zadd(k.processing(queue), {tid: score if score is not None else now + 30_000})
        await c.hset(k.task(tid), mapping={"lease_at_ms": now + 30_000, "lease_token": "holder-token"})
    elif state == "dead":
        await c.hset(k.task(tid), mapping={"last_error": "boom", "failed_at_ms": dead_at or now})
        await c.lpush(k.dead, tid)
    return tid


async def snapshot(admin: RedisAdmin) -> dict[str, Any]:
    """Every key of this test's prefix with its content (SCAN is fine in a test)."""
    c: Any = admin.client
    out: dict[str, Any] = {}
    async for key in c.scan_iter(match=admin.keys.prefix.replace("{", "\\{").replace("}", "\\}") + ":*"):
        kind = (await c.type(key)).decode()
        if kind == "hash":
            out[key] = await c.hgetall(key)
        elif kind == "zset":
            out[key] = await c.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[key] = await c.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(await c.smembers(key))
        else:
            out[key] = await c.get(key)
    return out


async def test_pause_resume_global_and_per_queue(admin: RedisAdmin) -> None:
    await put(admin, queue="mail")
    await admin.pause()
    assert (await admin.pause_state()).paused
    assert await admin.client.get(admin.keys.paused) == b"1"
    await admin.pause_queue("mail")
    state = await admin.pause_state()
    assert state.paused_queues == ("mail",)
    await admin.resume()
    await admin.resume_queue("mail")
    state = await admin.pause_state()
    assert not state.paused
    assert state.paused_queues == ()
    before = await snapshot(admin)
    with pytest.raises(ConfigurationError, match="unknown queue 'nope'"):
        await admin.pause_queue("nope")
    assert await snapshot(admin) == before


async def test_overview_counts_ready_processing_and_dead_per_queue(admin: RedisAdmin) -> None:
    await put(admin, queue="a")
    await put(admin, queue="a")
    await put(admin, queue="a", state="processing")
    await put(admin, queue="b", state="dead")
    await put(admin, queue="b", state="dead")
    await admin.pause_queue("b")
    ov = await admin.overview()
    assert [(q.name, q.ready, q.processing, q.dead, q.paused) for q in ov.queues] == [
        ("a", 2, 1, 0, False),
        ("b", 0, 0, 2, True),
    ]
    assert (ov.total_ready, ov.total_processing, ov.dead) == (2, 1, 2)
    assert json.loads(json.dumps(ov.to_json()))["queues"][1]["dead"] == 2


async def test_get_reports_each_status_and_unknown_ids_raise(admin: RedisAdmin) -> None:
    ids = {s: await put(admin, state=s) for s in ("ready", "processing", "dead", "none")}
    for state, tid in ids.items():
        record = await admin.get(tid)
        assert record.status == (TaskState.UNKNOWN if state == "none" else TaskState(state))
        assert record.handler == "send"
        assert record.payload_size == len(b'{"a":1}')
        assert record.metadata == {"k": "v"}
    with pytest.raises(TaskNotFoundError, match="not found"):
        await admin.get(str(uuid.uuid4()))


async def test_requeue_from_processing_fences_the_old_lease_and_moves_queue(admin: RedisAdmin) -> None:
    tid = await put(admin, state="processing", queue="a", attempts=1)
    result = await admin.requeue([tid], queue="b", delay=60)
    assert result.count == 1
    c: Any = admin.client
    assert await c.zscore(admin.keys.processing("a"), tid) is None
    assert await c.zscore(admin.keys.ready("a"), tid) is None
    score = await c.zscore(admin.keys.ready("b"), tid)
    assert score is not None
    assert score > time.time() * 1000 + 50_000
    fields = await c.hgetall(admin.keys.task(tid))
    assert fields[b"queue"] == b"b"
    assert fields[b"lease_token"] not in (b"holder-token", b"")
    assert fields[b"attempts"] == b"1"
    assert await c.sismember(admin.keys.queues, "b")


async def test_requeue_of_a_missing_id_creates_nothing(admin: RedisAdmin) -> None:
    before = await snapshot(admin)
    ghost = str(uuid.uuid4())
    result = await admin.requeue([ghost])
    assert (result.count, result.missing) == (0, (ghost,))
    assert await snapshot(admin) == before


async def test_replay_dlq_takes_oldest_first_and_can_reset_attempts(admin: RedisAdmin) -> None:
    oldest = await put(admin, state="dead", attempts=3)
    middle = await put(admin, state="dead", attempts=3)
    newest = await put(admin, state="dead", attempts=3)
    await admin.client.lpush(admin.keys.dead, "orphan-id")  # an id without a hash: dropped
    result = await admin.replay_dlq(limit=2, reset_attempts=True)
    assert result.count == 2
    ready = {x.decode() for x in await admin.client.zrange(admin.keys.ready("default"), 0, -1)}
    assert ready == {oldest, middle}
    assert await admin.client.lrange(admin.keys.dead, 0, -1) == [b"orphan-id", newest.encode()]
    assert await admin.client.hget(admin.keys.task(oldest), "attempts") == b"0"
    result = await admin.replay_dlq(limit=0)
    assert result.count == 1
    assert await admin.client.llen(admin.keys.dead) == 0
    assert await admin.client.hget(admin.keys.task(newest), "attempts") == b"3"


async def test_replay_by_id_and_source_ids(admin: RedisAdmin) -> None:
    a = await put(admin, state="dead")
    b = await put(admin, state="dead")
    assert await admin.ids_from("dlq", limit=0) == [b, a]  # newest first
    result = await admin.replay_dlq_ids([f" {b} ,{b}"])
    assert result.count == 1
    assert await admin.client.lrange(admin.keys.dead, 0, -1) == [a.encode()]
    with pytest.raises(ConfigurationError):
        await admin.replay_dlq_ids([])
    with pytest.raises(ConfigurationError, match="source must be"):
        await admin.ids_from("bogus")
    with pytest.raises(ConfigurationError, match="--from-queue"):
        await admin.ids_from("ready")


async def test_delete_counts_only_existing_tasks_and_never_creates_a_hash(admin: RedisAdmin) -> None:
    keep = await put(admin, state="dead")
    drop = await put(admin, state="processing")
    ghost = str(uuid.uuid4())
    result = await admin.delete([keep, ghost])
    assert (result.count, result.missing) == (1, (ghost,))
    assert not await admin.client.exists(admin.keys.task(ghost))
    assert await admin.client.llen(admin.keys.dead) == 0
    assert await admin.client.exists(admin.keys.task(keep))
    assert (await admin.get(keep)).status is TaskState.UNKNOWN
    result = await admin.delete([drop], delete_hash=True)
    assert result.count == 1
    assert not await admin.client.exists(admin.keys.task(drop))
    assert await admin.client.zcard(admin.keys.processing("default")) == 0


async def test_purge_in_batches_with_and_without_hashes(admin: RedisAdmin) -> None:
    ready = [await put(admin, score=i) for i in range(1, 451)]
    dead = [await put(admin, state="dead") for _ in range(3)]
    result = await admin.purge(ready=True, limit=300)
    assert result.ready == {"default": 300}
    assert await admin.client.zcard(admin.keys.ready("default")) == 150
    assert await admin.client.zrange(admin.keys.ready("default"), 0, 0) == [ready[300].encode()]
    assert await admin.client.exists(admin.keys.task(ready[0]))  # hashes kept, as in go-worker
    result = await admin.purge(ready=True, dlq=True, delete_hash=True)
    assert result.ready == {"default": 150}
    assert result.dead == 3
    assert not await admin.client.exists(admin.keys.task(ready[-1]), admin.keys.task(dead[0]))
    with pytest.raises(ConfigurationError, match="at least one of"):
        await admin.purge()


async def test_dlq_listing_filters_and_entry_detail(admin: RedisAdmin) -> None:
    old = int(time.time() * 1000) - 5_000
    a = await put(admin, state="dead", queue="mail", handler="send", dead_at=old)
    b = await put(admin, state="dead", queue="mail", handler="resize")
    c = await put(admin, state="dead", queue="img", handler="resize")
    page = await admin.dlq()
    assert [e.id for e in page.entries] == [c, b, a]
    assert page.total == 3
    assert page.entries[2].age_ms >= 5_000
    assert page.entries[2].last_error == "boom"
    assert [e.id for e in (await admin.dlq(queue="mail")).entries] == [b, a]
    assert [e.id for e in (await admin.dlq(handler="resize", offset=1)).entries] == [b]
    assert [e.id for e in (await admin.dlq(query="IMG")).entries] == [c]
    assert [e.id for e in (await admin.dlq(limit=1, offset=1)).entries] == [b]
    detail = await admin.dlq_entry(a)
    assert detail.payload_size == 7
    assert detail.failed_at_ms == old
    assert detail.metadata == {"k": "v"}
    with pytest.raises(TaskNotFoundError):
        await admin.dlq_entry(await put(admin))


async def test_dump_records_are_go_workers_and_filters_apply(admin: RedisAdmin) -> None:
    r = await put(admin, queue="a", retries=5)
    p = await put(admin, queue="b", state="processing", retries=1)
    d = await put(admin, queue="a", state="dead", handler="other", retries=1)
    records = [x async for x in admin.dump(ready=True, processing=True, dlq=True)]
    assert [(x.id, x.status.value) for x in records] == [(r, "ready"), (p, "processing"), (d, "dead")]
    line = records[0].to_dump()
    assert set(line) == {"id", "status", "handler", "queue", "priority", "weight", "retries", "ready_at", "updated_at"}
    assert line["ready_at"].endswith("Z")
    assert "metadata" in records[0].to_dump(include_metadata=True)
    only = [x.id async for x in admin.dump(ready=True, processing=True, dlq=True, min_retries=2)]
    assert only == [r]
    only = [x.id async for x in admin.dump(dlq=True, ready=False, handler="other")]
    assert only == [d]
    assert [x.id async for x in admin.dump(older_than=3600)] == []


async def test_snapshot_round_trips_binary_payloads_between_servers(admin: RedisAdmin) -> None:
    binary = bytes(range(256)) + b"\xff\xfe\x00"
    r = await put(admin, payload=binary, queue="pb")
    d = await put(admin, payload=b'{"ok":true}', state="dead", queue="pb")
    p = await put(admin, state="processing", queue="pb")
    entries = [e async for e in admin.export(ready=True, processing=True, dlq=True, limit=0)]
    lines = [json.dumps(e.to_json()) for e in entries]
    assert "fields_b64" in json.loads(lines[0])
    assert "fields_b64" not in json.loads(lines[2])  # UTF-8 payloads keep go-worker's exact format
    with redis_server() as other:
        target = RedisAdmin.from_url(other.url, prefix="imported")
        try:
            parsed = [SnapshotEntry.from_json(json.loads(line)) for line in lines]
            assert await target.import_entries(parsed) == 3
            assert await target.client.hget(target.keys.task(r), "payload") == binary
            assert (await target.get(r)).status is TaskState.READY
            assert (await target.get(d)).status is TaskState.DEAD
            assert (await target.get(p)).status is TaskState.PROCESSING
            token = await target.client.hget(target.keys.task(p), "lease_token")
            assert token not in (None, b"holder-token")
            again = [e async for e in target.export(ready=True, processing=True, dlq=True, limit=0)]
            assert [e.fields["payload"] for e in again] == [e.fields["payload"] for e in entries]
        finally:
            await target.aclose()


def test_snapshot_entry_validation() -> None:
    with pytest.raises(ConfigurationError, match="missing id"):
        SnapshotEntry.from_json({"status": "ready"})
    with pytest.raises(ConfigurationError, match="status must be"):
        SnapshotEntry.from_json({"id": "x", "status": "gone"})
    with pytest.raises(ConfigurationError, match="not valid base64"):
        SnapshotEntry.from_json({"id": "x", "fields_b64": {"payload": "!!"}})
    entry = SnapshotEntry.from_json({"id": "x", "fields": {"queue": "q"}})
    assert (entry.queue, entry.status) == ("q", "ready")


async def test_unreachable_redis_and_wrong_password_are_typed_errors() -> None:
    admin = RedisAdmin.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=1.0)
    try:
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            await admin.overview()
    finally:
        await admin.aclose()
    with redis_server(password="right") as srv:
        wrong = RedisAdmin.from_url(f"redis://:wrong@127.0.0.1:{srv.port}/0")
        try:
            with pytest.raises(ConfigurationError, match="authentication failed") as info:
                await wrong.pause()
            assert "wrong" not in str(info.value).replace("wrong password", "")
        finally:
            await wrong.aclose()
        check: Any = Redis.from_url(srv.url)
        assert await check.get("{go-worker}:paused") is None
        await check.aclose()
    with pytest.raises(ConfigurationError):
        RedisAdmin.from_url("http://x")


async def test_batches_span_several_script_calls_and_orphans_are_handled(admin: RedisAdmin) -> None:
    ids = [await put(admin, state="dead") for _ in range(450)]
    assert await admin.ids_from("dlq", limit=0) == ids[::-1]
    result = await admin.requeue(ids[:250])
    assert result.count == 250
    assert await admin.client.llen(admin.keys.dead) == 200
    result = await admin.replay_dlq(limit=0)
    assert result.count == 200
    assert await admin.client.zcard(admin.keys.ready("default")) == 450
    c: Any = admin.client
    await c.zadd(admin.keys.ready("default"), {"orphan": 1})  # an id whose hash is gone
    assert "orphan" not in [r.id async for r in admin.dump(limit=0)]
    result = await admin.delete(["orphan"])
    assert (result.count, result.missing) == (1, ())
    assert await c.zscore(admin.keys.ready("default"), "orphan") is None
    assert not await c.exists(admin.keys.task("orphan"))


async def test_dlq_pages_start_at_their_offset_and_are_bounded(admin: RedisAdmin) -> None:
    ids = [await put(admin, state="dead") for _ in range(30)]
    page = await admin.dlq(limit=5, offset=20)
    assert [e.id for e in page.entries] == ids[::-1][20:25]
    assert page.scanned == 5  # read from rank 20, not from the head
    with pytest.raises(ConfigurationError, match="limit must be <= 1000"):
        await admin.dlq(limit=1001)
