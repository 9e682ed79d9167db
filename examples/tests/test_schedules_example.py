"""Run examples/schedules.py as a program and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent


def test_schedules_example_fires_in_process_and_once_per_tick_on_two_nodes() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "schedules.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("in process: heartbeat @every 1s")
    assert "next 2 runs known" in lines[0]
    assert lines[1].startswith("durable: ")
    assert lines[1].endswith("each run once: True")
    assert lines[2] == "durable: manual runs: 1"
