"""The fault-test harness itself: its log parsing, its checks on hand-written logs, and a real worker process
(on ``memory://``: one process, so nothing is shared, but READY, SIGTERM and SIGKILL are real)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from worker_core.testing import FaultFleet, FaultWorker, LogRecord, check_at_least_once, check_exactly_once
from worker_core.testing.faults import wait_until

NO_AUTOLOAD = {"WORKER_PLUGINS_AUTOLOAD": "0"}


def test_log_lines_parse_into_records() -> None:
    assert LogRecord.parse("READY 42 1.5") == LogRecord("READY", "", 0, 1.5, pid=42)
    assert LogRecord.parse("S t1 2 3.25", worker=1) == LogRecord("S", "t1", 2, 3.25, worker=1)
    assert LogRecord.parse("K t1 4 9.0") == LogRecord("K", "t1", 4, 9.0)
    assert LogRecord.parse("A t1 lost 5.0") == LogRecord("A", "t1", 0, 5.0, outcome="lost")
    assert LogRecord.parse("L t1 6.0") == LogRecord("L", "t1", 0, 6.0)
    for junk in ("", "S t1", "S t1 x 1.0", "A t1 maybe 1.0", "Z 1 2 3"):
        assert LogRecord.parse(junk) is None, junk


def fake_fleet(folder: Path, logs: list[str], killed_at: list[float | None]) -> FaultFleet:
    """A fleet whose workers' logs are written here (their processes exit at once)."""
    folder.mkdir(exist_ok=True)
    fleet = FaultFleet("memory://", folder)
    for index, (text, killed) in enumerate(zip(logs, killed_at, strict=True)):
        log = folder / f"fake-{index}.log"
        log.write_text(text)
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait(timeout=30)
        fleet.workers.append(FaultWorker(index, log, process, killed_at=killed))
    return fleet


def test_at_least_once_accepts_reruns_of_tasks_a_kill_cut_short(tmp_path: Path) -> None:
    killed = "S a 1 1.0\nD a 1 1.1\nS b 1 1.2\n"  # b was running at the kill (2.0)
    survivor = "S c 1 1.0\nD c 1 1.1\nS b 2 2.5\nD b 2 2.6\n"
    found = check_at_least_once(fake_fleet(tmp_path, [killed, survivor], [2.0, None]), {"a", "b", "c"})
    assert found.duplicated == {"b"}
    assert found.in_flight == {"b": 2.0}
    assert found.slowest_redelivery_s == pytest.approx(0.5)
    assert found.starts == {"a": 1, "b": 2, "c": 1}


def test_at_least_once_refuses_a_lost_task_a_duplicate_without_a_kill_and_a_slow_redelivery(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="never finished"):
        check_at_least_once(fake_fleet(tmp_path / "lost", ["S a 1 1.0\n"], [None]), {"a"}, expect_in_flight=False)
    twice = "S a 1 1.0\nD a 1 1.1\nS a 2 1.2\nD a 2 1.3\n"
    with pytest.raises(AssertionError, match="ran twice without a kill"):
        check_at_least_once(fake_fleet(tmp_path / "twice", [twice], [None]), {"a"}, expect_in_flight=False)
    with pytest.raises(AssertionError, match="caught tasks mid-run"):
        check_at_least_once(fake_fleet(tmp_path / "calm", ["S a 1 1.0\nD a 1 1.1\n"], [None]), {"a"})
    late = ["S a 1 1.0\n", "S a 2 9.0\nD a 2 9.1\n"]
    with pytest.raises(AssertionError, match=r"redelivered 7\.00s after the kill"):
        check_at_least_once(fake_fleet(tmp_path / "late", late, [2.0, None]), {"a"}, redelivery_within=2.0)


def test_exactly_once_refuses_a_second_start_and_a_missing_task(tmp_path: Path) -> None:
    fleet = fake_fleet(tmp_path, ["S a 1 1.0\nS b 1 1.0\n", "S b 2 2.0\n"], [None, None])
    with pytest.raises(AssertionError, match="more than once"):
        check_exactly_once(fleet, {"a", "b"})
    with pytest.raises(AssertionError, match="never started"):
        check_exactly_once(fleet, {"a", "b", "c"})
    assert check_exactly_once(fake_fleet(tmp_path / "ok", ["S a 1 1.0\n"], [None]), {"a"}) == {"a": 1}


def test_a_partly_written_line_is_read_once_it_is_complete(tmp_path: Path) -> None:
    fleet = fake_fleet(tmp_path, ["S a 1 1.0\nD a"], [None])
    assert fleet.completed() == set()
    with fleet.workers[0].log.open("a") as f:
        f.write(" 1 1.5\n")
    assert fleet.completed() == {"a"}
    assert fleet.count("S") == 1  # read once, not again


async def test_a_real_worker_logs_ready_stops_on_sigterm_and_is_really_killed(tmp_path: Path) -> None:
    with FaultFleet("memory://", tmp_path, env=NO_AUTOLOAD) as fleet:
        [calm, victim] = await fleet.spawn_ready(2)
        assert [r.pid for r in fleet.records("READY", calm)] == [calm.pid]
        assert fleet.terminate(calm) == 0  # a graceful stop
        fleet.kill(victim)
        assert victim.process.returncode == -9
        assert fleet.killed() == [victim]
        assert victim.killed_at is not None
        assert not any(w.alive() for w in fleet.workers)


async def test_a_wait_that_times_out_says_what_the_workers_said(tmp_path: Path) -> None:
    with FaultFleet("nosuchscheme://x", tmp_path, env=NO_AUTOLOAD) as fleet:
        worker = fleet.spawn()
        await wait_until(lambda: worker.process.poll() is not None, timeout=30)  # it cannot open its backend
        with pytest.raises(AssertionError, match=r"exit 1 stderr .*nosuchscheme"):
            await fleet.wait_ready(worker, timeout=0.1)


async def test_supervise_restarts_a_worker_whenever_none_runs(tmp_path: Path) -> None:
    with FaultFleet("memory://", tmp_path, env=NO_AUTOLOAD) as fleet:
        [first] = await fleet.spawn_ready()
        fleet.kill(first)
        await fleet.supervise(lambda: fleet.count("READY") >= 2, timeout=30)
        assert len(fleet.workers) == 2
        assert fleet.workers[1].alive()
