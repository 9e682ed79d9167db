"""Run examples/sqlite_quickstart.py as a program (on a temporary file, and on a given one) and check its output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent


def run(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "sqlite_quickstart.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_sqlite_quickstart_runs_tasks_and_reports_results_and_the_dead_letter() -> None:
    lines = run()
    assert "cat.png: cat.png -> 640px (delivery 1)" in lines
    assert "dog.png: failed: ValueError: dog.png: width must be positive, got 0" in lines
    assert "owl.png: owl.png -> 128px (delivery 1)" in lines
    assert "recent outcomes: completed, completed, failed" in lines
    assert lines[-1] == "dead letter: resize after 1 delivery: ValueError: dog.png: width must be positive, got 0"


def test_sqlite_quickstart_keeps_its_tasks_in_the_given_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    run(str(path))
    lines = run(str(path))  # a second run on the same file: the first run's dead letter is still there
    assert path.exists()
    assert sum(1 for line in lines if line.startswith("dead letter: resize")) == 2
