"""`workerctl worker APP` as a real subprocess: loading errors, and a node that consumes durable tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_REDIS")}
    return subprocess.run(
        [sys.executable, "-m", "workerctl", "worker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=HERE,
        timeout=timeout,
        check=False,
    )


def test_an_app_that_cannot_be_imported_is_a_clear_exit_1() -> None:
    proc = run_worker("no_such_module:app")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: cannot import 'no_such_module' for no_such_module:app: ModuleNotFoundError: "
        "No module named 'no_such_module'"
    )
    proc = run_worker("os:no_such_attribute")
    assert (proc.returncode, proc.stderr.strip()) == (1, "Error: module 'os' has no attribute 'no_such_attribute'")
    proc = run_worker("os:getcwd")
    assert (proc.returncode, proc.stderr.strip()) == (1, "Error: os:getcwd returned str, not a TaskManager")
    proc = run_worker("worker_app_broken:create_manager")
    assert proc.returncode == 1
    assert "ZeroDivisionError" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_app_spelling_and_options_are_usage_errors() -> None:
    proc = run_worker("no-colon")
    assert proc.returncode == 2
    assert "is not module:attribute" in proc.stderr
    proc = run_worker("os:getcwd", "--queue", "emails=zero")
    assert proc.returncode == 2
    assert "weight must be an integer >= 1" in proc.stderr
    proc = run_worker("os:getcwd", "--redis-url", "http://localhost")
    assert proc.returncode == 2
