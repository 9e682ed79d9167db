"""Run examples/quickstart.py as a program (the README's first command) and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent


def test_quickstart_streams_every_result_in_priority_and_weight_order() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    by_name = {line.split()[2]: line for line in lines[:-1]}
    assert len(by_name) == 13
    assert "cancelled" in by_name["stuck"]
    assert "uploaded on attempt 2" in by_name["upload"]
    assert "4999950000" in by_name["checksum"]
    assert lines[-1].endswith("done: 12 completed, 1 cancelled, 1 retried, 0 failed")
    names = [line.split()[2] for line in lines[:-1]]
    # The delayed task is last; "urgent" (priority 0) beats every priority-5 task of both queues.
    assert names[-1] == "delayed"
    priority_five = [n for n in names if n.startswith(("bulk-", "crit-"))]
    assert names.index("urgent") < names.index(priority_five[0])
