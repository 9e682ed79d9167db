"""Read commands: inspect, queues, stats, paused, get, dump, dlq list/show (CliRunner, real Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from ctl_helpers import Ctl


def test_inspect_prints_go_lines_totals_and_ids(ctl: Ctl) -> None:
    a = ctl.put(queue="mail")
    ctl.put(queue="mail", state="processing")
    ctl.put(queue="img", state="dead")
    out = ctl.ok("durable", "inspect", "--show-ids")
    assert out.splitlines() == [
        "queue=img ready=0 processing=0",
        "queue=mail ready=1 processing=1",
        "ready=1 processing=1 dead=1",
        "ready IDs: specify --queue to display IDs",
    ]
    out = ctl.ok("durable", "inspect", "--queue", "mail", "--show-ids")
    assert out.splitlines()[-1] == f"ready IDs: {a}"
    data = ctl.json("durable", "inspect", "--queue", "mail", "--show-ids", "--json")
    [mail] = data["queues"]
    assert mail.pop("due") == 1  # the backlog: ready and due now
    assert mail.pop("oldest_due_age_s") >= 0
    assert data["queues"] == [{"name": "mail", "ready": 1, "processing": 1, "paused": False}]
    assert data["ready_ids"] == [a]
    assert ctl.ok("durable", "inspect", "--queue", "img", "--show-ids").splitlines()[-1] == "ready IDs: none"


def test_queues_with_counts_prints_the_real_dead_count(ctl: Ctl) -> None:
    ctl.put(queue="a")
    ctl.put(queue="b", state="dead")
    ctl.put(queue="b", state="dead")
    assert ctl.ok("durable", "queues").splitlines() == ["a", "b"]
    assert ctl.ok("durable", "queues", "--with-counts").splitlines() == [
        "queue=a ready=1 processing=0 dead=0",
        "queue=b ready=0 processing=0 dead=2",
        "ready=1 processing=0 dead=2",
    ]
    data = ctl.json("durable", "queues", "--json")
    assert [(q["name"], q["dead"]) for q in data["queues"]] == [("a", 0), ("b", 2)]


def test_stats_json_has_real_per_queue_counts_and_text_is_a_table(ctl: Ctl) -> None:
    ctl.put(queue="a")
    ctl.put(queue="a")
    ctl.put(queue="b", state="processing")
    ctl.put(queue="b", state="dead")
    data = ctl.json("durable", "stats", "--json")
    assert [(q.pop("due"), q.pop("oldest_due_age_s") >= 0) for q in data["queues"]] == [(2, True), (0, True)]
    assert data["queues"] == [
        {"name": "a", "ready": 2, "processing": 0, "dead": 0, "paused": False},
        {"name": "b", "ready": 0, "processing": 1, "dead": 1, "paused": False},
    ]
    assert (data["total_ready"], data["total_processing"], data["dead"], data["paused"]) == (2, 1, 1, False)
    lines = ctl.ok("durable", "stats").splitlines()
    assert lines[0].split() == ["QUEUE", "READY", "PROCESSING", "DEAD", "PAUSED"]
    assert lines[1].split() == ["a", "2", "0", "0", "no"]
    assert lines[-1].split() == ["TOTAL", "2", "1", "1", "no"]


def test_paused_reports_global_and_queue_pauses(ctl: Ctl) -> None:
    ctl.put(queue="a")
    assert ctl.ok("durable", "paused") == "paused=false\n"
    ctl.r.set(ctl.keys.paused, "1")
    ctl.r.sadd(ctl.keys.paused_queues, "a")
    assert ctl.ok("durable", "paused").splitlines() == ["paused=true", "paused_queues=a"]
    assert ctl.json("durable", "paused", "--json") == {"paused": True, "paused_queues": ["a"]}


def test_get_prints_the_dump_record_with_status(ctl: Ctl) -> None:
    tid = ctl.put(state="processing", queue="q", retries=4)
    record = ctl.json("durable", "get", "--id", tid)
    assert record["id"] == tid
    assert record["status"] == "processing"
    assert record["queue"] == "q"
    assert record["retries"] == 4
    assert "attempts" not in record  # zero values are omitted, as in go-worker
    full = ctl.json("durable", "get", "--id", tid, "--json")
    assert full["payload_size"] == 7
    assert full["metadata"] == {}


def test_dump_is_jsonl_in_go_order_with_filters(ctl: Ctl) -> None:
    r = ctl.put(queue="a", retries=5)
    p = ctl.put(queue="a", state="processing", retries=1)
    d = ctl.put(state="dead", handler="other", retries=1)
    lines = ctl.ok("durable", "dump", "--processing", "--dlq").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(x["id"], x["status"]) for x in records] == [(r, "ready"), (p, "processing"), (d, "dead")]
    assert all("payload" not in x for x in records)
    only = [json.loads(x)["id"] for x in ctl.ok("durable", "dump", "--processing", "--min-retries", "2").splitlines()]
    assert only == [r]
    only = [
        json.loads(x)["id"] for x in ctl.ok("durable", "dump", "--no-ready", "--dlq", "--handler", "other").splitlines()
    ]
    assert only == [d]
    assert ctl.ok("durable", "dump", "--older-than", "1h") == ""


def test_dlq_list_and_show(ctl: Ctl) -> None:
    a = ctl.put(state="dead", queue="mail")
    b = ctl.put(state="dead", queue="img", handler="resize")
    data = ctl.json("durable", "dlq", "list", "--json")
    assert [e["id"] for e in data["entries"]] == [b, a]
    assert data["entries"][0]["last_error"] == "boom"
    assert [e["id"] for e in ctl.json("durable", "dlq", "list", "--query", "MAIL", "--json")["entries"]] == [a]
    text = ctl.ok("durable", "dlq", "list")
    assert text.splitlines()[0].split()[:4] == ["ID", "QUEUE", "HANDLER", "ATTEMPTS"]
    assert b in text
    shown = ctl.json("durable", "dlq", "show", "--id", a, "--json")
    assert (shown["queue"], shown["payload_size"], shown["last_error"]) == ("mail", 7, "boom")
    text = ctl.ok("durable", "dlq", "show", "--id", a)
    assert f"id:           {a}" in text
    assert "last_error:   boom" in text


def test_stats_watch_redraws_until_ctrl_c(ctl: Ctl) -> None:
    ctl.put(queue="w")
    env = {**os.environ, "WORKER_REDIS_URL": ctl.url, "WORKER_REDIS_PREFIX": ctl.prefix}
    # Ctrl-C as a terminal sends it: a suite started in the background (``cmd &`` in a script) inherits an
    # ignored SIGINT, which Python then keeps ignoring, so the child puts the default handler back first.
    argv = ["workerctl", "durable", "stats", "--json", "--watch", "200ms"]
    start = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = {argv!r}; runpy.run_module('workerctl', run_name='__main__', alter_sys=True)"
    )
    cmd = [sys.executable, "-c", start]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        ctl.put(queue="w")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # poll the redraws until the new task shows up
            latest = json.loads(proc.stdout.readline())
            if latest["total_ready"] == 2:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert first["total_ready"] == 1
    assert latest["total_ready"] == 2
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_dump_into_a_closed_pipe_exits_quietly(ctl: Ctl) -> None:
    pipe = ctl.r.pipeline(transaction=False)
    for i in range(2000):  # more than a pipe buffer of JSON lines
        pipe.hset(ctl.keys.task(f"t{i:04d}"), mapping={"handler": "h", "queue": "default", "payload": "x"})
        pipe.zadd(ctl.keys.ready("default"), {f"t{i:04d}": i})
    pipe.sadd(ctl.keys.queues, "default")
    pipe.execute()
    env = {**os.environ, "WORKER_REDIS_URL": ctl.url, "WORKER_REDIS_PREFIX": ctl.prefix}
    cmd = [sys.executable, "-m", "workerctl", "durable", "dump", "--limit", "0"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=30)
    assert json.loads(first)["id"] == "t0000"
    assert err == b""
