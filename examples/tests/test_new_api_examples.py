"""Run the examples of the new API (handles and submit, define_task, BlockingManager) and check their output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent


def run(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_handles_example() -> None:
    lines = run("handles.py")
    assert lines == [
        "fetched: ['https://example.org/0', 'https://example.org/1', 'https://example.org/2']",
        "urgent: https://example.org/now (attempt 1)",
        "words: 4",
        "slow: timed out after 0.05s",
        "stuck: cancelled",
    ]


def test_decorators_example() -> None:
    lines = run("decorators.py")
    assert lines == [
        "sent 'hello' to ada@example.org (attempts: 1)",
        "sent 'again' to flaky@example.org (attempts: 2)",
        "sent 'now' to vip@example.org (attempts: 1)",
        "report: 10",
        "sent to: ada@example.org, flaky@example.org, vip@example.org",
    ]


def test_sync_caller_example() -> None:
    lines = run("sync_caller.py")
    assert len(lines) == 7
    for n, line in enumerate(lines[:6]):
        assert line.startswith(f"request {n} (web")
        assert line.endswith(f"img-{n}.png@128px")
    assert lines[-1] == "closed"
