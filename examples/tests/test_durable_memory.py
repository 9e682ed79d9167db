"""Run examples/durable_memory.py as a program and check what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent


def test_durable_memory_example_acks_retries_and_dead_letters() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "durable_memory.py")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "completed sent 'hello' to ada@example.com (delivery 1)" in lines
    assert "completed sent 'retry me' to bob@flaky.example (delivery 2)" in lines
    assert "failed    ValueError('no such mailbox')" in lines
    assert "dead letter: send_email after 1 delivery: ValueError: no such mailbox" in lines
    assert lines[-1] == "scheduled 3, completed 2, failed 1, retried 1"
