"""`workerctl worker --processes N` as real processes on a real redis-server: restarts, recycling, drain, health.

Every test runs the real console entry point (``python -m workerctl worker``) with the app in
worker_app_procs.py, kills or stops its worker processes with real signals and reads what ran from the
``done.log`` the tasks append to (one line per run, so a duplicate shows).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ctl_helpers import Ctl
from worker_redis.testing import go_worker_task_fields

HERE = Path(__file__).parent
APP = "worker_app_procs:create_manager"
pytestmark = pytest.mark.timeout(180)  # a hang fails its test instead of the whole run


class Node:
    """A `workerctl worker` process; its stderr lines pumped into a queue by a thread (no pipe can fill)."""

    def __init__(self, ctl: Ctl, out: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
        env.update(WORKER_REDIS_URL=ctl.url, WORKER_REDIS_PREFIX=ctl.prefix, WORKER_TEST_OUT=str(out))
        cmd = [sys.executable, "-m", "workerctl", "worker", *args]
        self.proc = subprocess.Popen(cmd, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self.health: str | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def line_with(self, text: str, timeout: float = 30.0) -> str:
        """The next stderr line containing ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {timeout}s; stderr so far:\n{''.join(self.lines)}") from None
            if line is None:
                raise AssertionError(f"stderr ended without {text!r}:\n{''.join(self.lines)}")
            if text in line:
                return line

    def started(self) -> None:
        line = self.line_with("supervisor started")
        health = line.split("health=")[1].split()[0]
        self.health = None if health == "off" else health

    def get(self, path: str) -> tuple[int, Any]:
        assert self.health is not None
        try:
            with urllib.request.urlopen(f"http://{self.health}{path}", timeout=5) as reply:
                body = reply.read()
                status = reply.status
        except urllib.error.HTTPError as err:
            body, status = err.read(), err.code
        return status, (json.loads(body) if path != "/metrics" else body.decode())

    def child_pids(self) -> list[int]:
        _, body = self.get("/livez")
        return [row["pid"] for row in body["processes"] if "pid" in row]

    def exit_code(self, timeout: float = 30.0) -> int:
        """Wait for the node to exit; its code (the whole stderr in the message when it hangs)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the node did not exit; stderr:\n" + "".join(self.lines)) from None
        self._pump.join(timeout=5)
        return code

    def close(self) -> None:
        # A failed test may leave worker processes (each in a group of its own, perhaps orphaned): every one
        # this node ever started is killed, then the supervisor.
        started = {int(line.split("(pid ")[1].rstrip(")\n")) for line in self.lines if "started (pid " in line}
        for pid in started | set(self._children_by_ps()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._pump.join(timeout=5)
        if self.proc.stderr is not None and not self._pump.is_alive():  # closing it under a reader would block
            self.proc.stderr.close()

    def _children_by_ps(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]


@pytest.fixture
def node_factory(ctl: Ctl, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(*args: str) -> Node:
        node = Node(ctl, tmp_path, *args)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()


def seed(ctl: Ctl, names: list[str], handler: str = "count", start: int = 0) -> None:
    """Enqueue one task per name, as go-worker's enqueue script writes them (one pipeline)."""
    keys = ctl.keys
    now = int(time.time() * 1000)
    pipe = ctl.r.pipeline(transaction=False)
    pipe.sadd(keys.queues, "default")
    for i, name in enumerate(names, start):
        tid = f"00000000-0000-4000-8000-{i:012d}"
        payload = json.dumps({"name": name}).encode()
        fields = go_worker_task_fields(
            handler=handler, payload=payload, queue="default", retries=3, attempts=0, now_ms=now
        )
        pipe.hset(keys.task(tid), mapping=fields)
        pipe.zadd(keys.ready("default"), {tid: now})
    pipe.execute()


def runs(out: Path) -> Counter[str]:
    """How often each task ran (its name's lines in done.log)."""
    path = out / "done.log"
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line)


def ran_at_least(out: Path, n: int) -> bool:
    return sum(runs(out).values()) >= n


def eventually(
    condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition", node: Node | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met in {timeout}s" + (
            "; stderr:\n" + "".join(node.lines) if node is not None else ""
        )
        time.sleep(0.02)


def settled(ctl: Ctl) -> bool:
    """Nothing ready or leased any more."""
    return bool(ctl.r.zcard(ctl.keys.ready("default")) == 0 and ctl.r.zcard(ctl.keys.processing("default")) == 0)


def test_three_processes_lose_nothing_while_children_are_sigkilled(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    names = [f"t{i}" for i in range(3000)]
    seed(ctl, names)
    node = node_factory(APP, "--processes", "3", "-c", "4", "--health-listen", "127.0.0.1:0")
    node.started()
    killed: list[int] = []
    for threshold in (500, 1800):
        eventually(functools.partial(ran_at_least, tmp_path, threshold), what=f"{threshold} tasks run")
        eventually(lambda: len(node.child_pids()) == 3, what="three children")  # the first one's replacement too
        victim = node.child_pids()[len(killed)]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        assert f"(pid {victim}) died (killed by SIGKILL); restarting it" in node.line_with(f"(pid {victim}) died")
    eventually(lambda: settled(ctl) and set(runs(tmp_path)) == set(names), what="every task run", node=node)
    done = runs(tmp_path)
    assert set(done) == set(names)  # 0 lost
    duplicates = sum(n - 1 for n in done.values())
    assert duplicates <= len(killed) * 4  # only what the killed processes were running (4 each) ran again
    eventually(lambda: len(node.child_pids()) == 3 and not set(node.child_pids()) & set(killed), what="replaced")
    status, body = node.get("/metrics")
    assert status == 200
    assert "worker_process_restarts_total" in body
    node.proc.send_signal(signal.SIGTERM)
    assert node.exit_code(30) == 0, "".join(node.lines)
    node.line_with("supervisor stopped: every worker process drained")
    assert "Traceback" not in "".join(node.lines)


def test_a_crash_looping_app_stops_the_supervisor_loudly(node_factory: Callable[..., Node]) -> None:
    node = node_factory("worker_app_procs:explode", "--processes", "2", "--max-restarts", "2")
    assert node.exit_code(60) == 1, "".join(node.lines)
    node._pump.join(timeout=5)
    text = "".join(node.lines)
    assert "RuntimeError: this app cannot start" in text  # each child's own error is in the log
    assert node.lines[-1].startswith("Error: crash loop: worker processes crashed 3 times within 60s"), node.lines[-1]


def test_recycling_by_task_count_replaces_children_and_runs_each_task_once(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    names = [f"r{i}" for i in range(300)]
    seed(ctl, names)
    node = node_factory(APP, "--processes", "2", "-c", "2", "--max-tasks-per-child", "40")
    node.started()
    eventually(lambda: settled(ctl) and set(runs(tmp_path)) == set(names), what="every task run", node=node)
    node.proc.send_signal(signal.SIGTERM)
    assert node.exit_code(30) == 0, "".join(node.lines)
    done = runs(tmp_path)
    assert set(done) == set(names)
    assert max(done.values()) == 1  # 0 duplicates
    recycled = [line for line in node.lines if "recycled; starting its replacement" in line]
    assert len(recycled) >= 300 // (40 + 2) - 2
    per_pid = Counter(line.split()[1] for line in (tmp_path / "done.log").read_text().splitlines())
    assert max(per_pid.values()) <= 40 + 2 - 1  # the limit, plus what was running when it was reached


def test_a_sigterm_while_a_child_recycles_still_drains_it(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    """A child that began its own graceful stop (a recycle) took the supervisor's SIGTERM for a second signal and
    stopped at once, cancelling the task it was draining (seen in CI: the node exited 1)."""
    seed(ctl, ["w0"], handler="hold")
    node = node_factory(APP, "--processes", "1", "-c", "2", "--max-tasks-per-child", "1")
    node.started()
    eventually(lambda: (tmp_path / "started-w0").exists(), what="the held task")
    seed(ctl, ["c0"], start=1)  # it finishes: the child recycles, and drains w0 first
    node.line_with("recycling worker process 0")
    node.proc.send_signal(signal.SIGTERM)
    node.line_with("stopping gracefully: SIGTERM to 1 worker processes")
    assert node.proc.poll() is None  # still draining w0
    (tmp_path / "release").touch()
    assert node.exit_code(30) == 0, "".join(node.lines)
    assert "stopping now" not in "".join(node.lines)
    assert runs(tmp_path) == Counter({"w0": 1, "c0": 1})


def test_recycling_by_memory_replaces_a_leaking_child(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    names = [f"m{i}" for i in range(40)]
    seed(ctl, names, handler="leak")
    node = node_factory(APP, "--processes", "1", "-c", "1", "--max-memory-per-child", "110MiB")
    node.started()
    eventually(lambda: settled(ctl) and set(runs(tmp_path)) == set(names), what="every task run", node=node)
    node.proc.send_signal(signal.SIGTERM)
    assert node.exit_code(30) == 0, "".join(node.lines)
    done = runs(tmp_path)
    assert set(done) == set(names)
    assert max(done.values()) == 1
    assert any("resident memory" in line and "--max-memory-per-child" in line for line in node.lines)
    assert any("recycled; starting its replacement" in line for line in node.lines)


def test_sigterm_drains_every_child_and_livez_sees_a_stopped_child(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    seed(ctl, ["h0", "h1"], handler="hold")
    node = node_factory(
        APP, "--processes", "2", "-c", "1", "--health-listen", "127.0.0.1:0", "--heartbeat-timeout", "1s"
    )
    node.started()
    eventually(lambda: (tmp_path / "started-h0").exists() and (tmp_path / "started-h1").exists(), what="both held")
    eventually(lambda: node.get("/readyz")[0] == 200, what="ready")
    assert node.get("/livez")[0] == 200
    stopped = node.child_pids()[0]
    os.kill(stopped, signal.SIGSTOP)  # its event loop, and so its lease loop and heartbeats, stop
    try:
        eventually(lambda: node.get("/livez")[0] == 503, timeout=15, what="livez unhealthy")
        _, body = node.get("/livez")
        row = next(r for r in body["processes"] if r.get("pid") == stopped)
        assert row["live"] is False
    finally:
        os.kill(stopped, signal.SIGCONT)
    eventually(lambda: node.get("/livez")[0] == 200, timeout=15, what="livez healthy again")
    node.proc.send_signal(signal.SIGTERM)
    node.line_with("stopping gracefully: SIGTERM to 2 worker processes")
    eventually(lambda: node.get("/readyz")[0] == 503, what="not ready while draining")
    assert node.proc.poll() is None  # both children still run their held task
    assert not (tmp_path / "done.log").exists()
    (tmp_path / "release").touch()
    assert node.exit_code(30) == 0, "".join(node.lines)
    assert runs(tmp_path) == Counter({"h0": 1, "h1": 1})


def gone(pid: int) -> bool:
    """The process exited (reaped, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_second_sigterm_stops_every_child_now_and_their_tasks_run_again(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    seed(ctl, ["s0", "s1"], handler="hold")
    node = node_factory(APP, "--processes", "2", "-c", "1")
    node.started()
    eventually(lambda: (tmp_path / "started-s0").exists() and (tmp_path / "started-s1").exists(), what="both held")
    node.proc.send_signal(signal.SIGTERM)
    node.line_with("stopping gracefully: SIGTERM to 2 worker processes")
    node.proc.send_signal(signal.SIGTERM)
    assert node.exit_code(30) == 130, "".join(node.lines)
    assert "stopping now: SIGINT to every worker process" in "".join(node.lines)
    assert not (tmp_path / "done.log").exists()  # both were cancelled ...
    assert ctl.r.zcard(ctl.keys.ready("default")) + ctl.r.zcard(ctl.keys.processing("default")) == 2  # ... not lost


def test_children_drain_by_themselves_when_the_supervisor_is_sigkilled(
    ctl: Ctl, tmp_path: Path, node_factory: Callable[..., Node]
) -> None:
    seed(ctl, ["o0"], handler="hold")
    node = node_factory(APP, "--processes", "2", "-c", "1", "--health-listen", "127.0.0.1:0")
    node.started()
    eventually(lambda: (tmp_path / "started-o0").exists(), what="the task held")
    eventually(lambda: len(node.child_pids()) == 2, what="two children")
    children = node.child_pids()
    node.proc.kill()
    node.proc.wait(timeout=30)
    eventually(lambda: any("the supervisor (pid" in line for line in node.lines), what="an orphan noticed")
    assert not all(gone(pid) for pid in children)  # the one holding the task is still draining
    (tmp_path / "release").touch()
    eventually(lambda: all(gone(pid) for pid in children), timeout=30, what="both children exited", node=node)
    assert runs(tmp_path) == Counter({"o0": 1})  # finished once, acked
    eventually(lambda: settled(ctl), what="nothing left leased")
