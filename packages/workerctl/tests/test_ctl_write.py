"""Mutating commands: every one as a dry run (nothing changes) and with --apply (its exact effect)."""

from __future__ import annotations

import json
import time

import pytest
from ctl_helpers import Ctl


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pause"], "dry-run: use --apply to pause durable dequeue"),
        (["resume"], "dry-run: use --apply to resume durable dequeue"),
        (["pause", "--queue", "default"], "dry-run: use --apply to pause queue default"),
        (["retry", "--source", "dlq"], "dry-run: use --apply to requeue up to 100 task(s)"),
        (["retry", "--source", "dlq", "--limit", "0"], "dry-run: use --apply to requeue all matching tasks"),
        (["retry", "--id", "a,b", "--id", "c"], "dry-run: use --apply to requeue 3 task(s)"),
        (["requeue", "--queue", "default", "--processing"], "dry-run: use --apply to requeue from processing"),
        (["delete", "--source", "ready", "--from-queue", "q"], "dry-run: use --apply to delete all tasks from ready:q"),
        (["delete", "--source", "dlq", "--limit", "5"], "dry-run: use --apply to delete up to 5 task(s) from dlq"),
        (["purge", "--ready", "--dlq"], "dry-run: use --apply to purge"),
        (["dlq", "replay", "--no-show-counts"], "dry-run: use --apply to replay up to 100 DLQ item(s)"),
        (["enqueue", "--handler", "h", "--payload", "{}", "--id", "7d4f0f0e-5a39-4a61-9d2a-2b2f4c1e8e11"],
         "dry-run: use --apply to enqueue task 7d4f0f0e-5a39-4a61-9d2a-2b2f4c1e8e11"),
    ],
)  # fmt: skip
def test_dry_runs_change_nothing(ctl: Ctl, args: list[str], expected: str) -> None:
    ctl.put()
    ctl.put(state="dead")
    ctl.put(state="processing")
    before = ctl.state()
    assert ctl.ok("durable", *args).strip() == expected
    assert ctl.state() == before


def test_pause_and_resume_apply(ctl: Ctl) -> None:
    ctl.put(queue="mail")
    assert ctl.ok("durable", "pause", "--apply") == "durable dequeue paused\n"
    assert ctl.r.get(ctl.keys.paused) == b"1"
    assert ctl.ok("durable", "resume", "--apply") == "durable dequeue resumed\n"
    assert ctl.r.get(ctl.keys.paused) is None
    assert ctl.ok("durable", "pause", "--queue", "mail", "--apply") == "queue mail paused\n"
    assert ctl.r.smembers(ctl.keys.paused_queues) == {b"mail"}
    assert ctl.ok("durable", "resume", "--queue", "mail", "--apply") == "queue mail resumed\n"
    assert ctl.r.smembers(ctl.keys.paused_queues) == set()


def test_retry_from_dlq_by_id_and_from_processing(ctl: Ctl) -> None:
    dead = ctl.put(state="dead", attempts=3)
    other = ctl.put(state="dead")
    assert ctl.ok("durable", "retry", "--id", dead, "--apply") == "requeued 1 task(s)\n"
    assert ctl.ready_ids() == [dead]
    assert ctl.dead_ids() == [other]
    assert ctl.r.hget(ctl.keys.task(dead), "attempts") == b"3"
    held = ctl.put(state="processing", queue="work")
    out = ctl.ok("durable", "retry", "--source", "processing", "--from-queue", "work", "--queue", "other", "--apply")
    assert out == "requeued 1 task(s)\n"
    assert ctl.r.zcard(ctl.keys.processing("work")) == 0
    assert ctl.ready_ids("other") == [held]
    assert ctl.r.hget(ctl.keys.task(held), "lease_token") not in (None, b"holder")
    assert ctl.ok("durable", "retry", "--source", "dlq", "--reset-attempts", "--apply") == "requeued 1 task(s)\n"
    assert ctl.r.hget(ctl.keys.task(other), "attempts") == b"0"
    assert ctl.ok("durable", "retry", "--source", "dlq", "--apply") == "no tasks found to requeue\n"


def test_retry_with_delay_sets_the_ready_time(ctl: Ctl) -> None:
    tid = ctl.put(state="dead")
    ctl.ok("durable", "retry", "--id", tid, "--delay", "1m", "--apply")
    score = ctl.r.zscore(ctl.keys.ready("default"), tid)
    ready_at = int(ctl.r.hget(ctl.keys.task(tid), "ready_at_ms"))
    updated = int(ctl.r.hget(ctl.keys.task(tid), "updated_at_ms"))
    assert score == ready_at
    assert 59_000 <= ready_at - updated <= 61_000


def test_requeue_moves_a_queue_processing_set_back_to_ready(ctl: Ctl) -> None:
    a = ctl.put(state="processing", queue="q")
    b = ctl.put(state="processing", queue="q")
    assert ctl.ok("durable", "requeue", "--queue", "q", "--processing", "--apply") == "requeued 2 task(s)\n"
    assert sorted(ctl.ready_ids("q")) == sorted([a, b])
    assert ctl.r.zcard(ctl.keys.processing("q")) == 0


def test_delete_removes_tasks_and_optionally_hashes(ctl: Ctl) -> None:
    a = ctl.put(state="dead")
    b = ctl.put()
    assert ctl.ok("durable", "delete", "--id", a, "--apply") == "deleted 1 task(s)\n"
    assert ctl.dead_ids() == []
    assert ctl.r.exists(ctl.keys.task(a))
    assert ctl.json("durable", "get", "--id", a)["status"] == "unknown"
    assert ctl.ok("durable", "delete", "--source", "ready", "--from-queue", "default", "--delete-hash", "--apply") == (
        "deleted 1 task(s)\n"
    )
    assert ctl.ready_ids() == []
    assert not ctl.r.exists(ctl.keys.task(b))
    assert ctl.ok("durable", "delete", "--source", "dlq", "--apply") == "no tasks found to delete\n"


def test_purge_reports_removed_counts(ctl: Ctl) -> None:
    for _ in range(3):
        ctl.put(queue="a")
    ctl.put(queue="b", state="processing")
    dead = ctl.put(state="dead")
    out = ctl.ok("durable", "purge", "--ready", "--processing", "--dlq", "--limit", "2", "--apply")
    assert out.splitlines() == [
        "purged ready queue=a removed=2",
        "purged ready queue=b removed=0",
        "purged ready queue=default removed=0",
        "purged processing queue=a removed=0",
        "purged processing queue=b removed=1",
        "purged processing queue=default removed=0",
        "purged dlq removed=1",
    ]
    assert ctl.r.zcard(ctl.keys.ready("a")) == 1
    assert ctl.r.exists(ctl.keys.task(dead))  # hashes are kept unless --delete-hash


def test_dlq_replay_oldest_first_with_counts(ctl: Ctl) -> None:
    oldest = ctl.put(state="dead", queue="q")
    newest = ctl.put(state="dead", queue="q")
    assert ctl.ok("durable", "dlq", "replay", "--batch", "1", "--apply").splitlines() == [
        "DLQ size before: 2",
        "replayed 1 DLQ item(s)",
        "DLQ size after: 1",
    ]
    assert ctl.ready_ids("q") == [oldest]
    assert ctl.dead_ids() == [newest]
    assert ctl.ok("durable", "dlq", "replay", "--id", newest, "--no-show-counts", "--apply") == (
        "replayed 1 DLQ item(s)\n"
    )
    assert ctl.dead_ids() == []
    for _ in range(3):
        ctl.put(state="dead")
    assert "replayed 3 DLQ item(s)" in ctl.ok("durable", "dlq", "replay", "--all", "--apply")


def test_snapshot_import_validates_every_line_first(ctl: Ctl) -> None:
    good = json.dumps({"id": "a", "status": "ready", "queue": "q", "fields": {"handler": "h"}})
    bad = json.dumps({"id": "b", "status": "gone"})
    before = ctl.state()
    result = ctl.run("durable", "snapshot", "import", "--apply", input=f"{good}\n\n{bad}\n")
    assert result.exit_code == 1
    assert result.stderr == "Error: line 3: status must be ready, processing or dead, not 'gone'\n"
    assert ctl.state() == before
    assert (
        ctl.ok("durable", "snapshot", "import", input=good + "\n")
        == "dry-run: use --apply to import 1 snapshot item(s)\n"
    )
    assert ctl.ok("durable", "snapshot", "import", "--apply", input=good + "\n") == "imported 1 snapshot item(s)\n"
    assert ctl.ready_ids("q") == ["a"]


def test_retry_all_of_a_large_dlq_and_too_many_explicit_ids(ctl: Ctl) -> None:
    now = int(time.time() * 1000)
    pipe = ctl.r.pipeline(transaction=False)
    for i in range(1200):
        pipe.hset(ctl.keys.task(f"d{i:04d}"), mapping={"handler": "h", "queue": "default", "failed_at_ms": now})
        pipe.lpush(ctl.keys.dead, f"d{i:04d}")
    pipe.execute()
    assert ctl.ok("durable", "retry", "--source", "dlq", "--limit", "0", "--apply") == "requeued 1200 task(s)\n"
    assert ctl.r.zcard(ctl.keys.ready("default")) == 1200
    result = ctl.run("durable", "retry", "--id", ",".join(f"x{i}" for i in range(1001)), "--apply")
    assert result.exit_code == 2
    assert "too many task ids: 1001 (at most 1000)" in result.stderr


def test_requeue_from_ready_with_a_delay_pushes_the_ready_time(ctl: Ctl) -> None:
    a = ctl.put(queue="q")
    before = ctl.r.zscore(ctl.keys.ready("q"), a)
    assert ctl.ok("durable", "requeue", "--queue", "q", "--delay", "2m", "--apply") == "requeued 1 task(s)\n"
    after = ctl.r.zscore(ctl.keys.ready("q"), a)
    assert after is not None
    assert before is not None
    assert 110_000 <= after - before <= 130_000
