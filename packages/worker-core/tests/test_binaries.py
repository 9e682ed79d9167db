"""worker_core.testing.binaries: a missing program stops a test run with one message that says how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from worker_core.testing.binaries import Binary, MissingBinaryError, require_binary

ABSENT = Binary("worker-no-such-program", apt="worker-absent-pkg", brew="worker-absent", why="the tests start it")


def test_a_program_on_path_is_found() -> None:
    found = require_binary(Binary("sh"))
    assert os.path.basename(found) == "sh"
    assert os.access(found, os.X_OK)


def test_a_missing_program_raises_one_error_naming_it_and_how_to_install_it() -> None:
    with pytest.raises(MissingBinaryError) as caught:
        require_binary(ABSENT)
    assert isinstance(caught.value, RuntimeError)
    assert caught.value.missing == (ABSENT,)
    message = str(caught.value)
    assert "worker-no-such-program (the tests start it)" in message
    assert "`sudo apt-get install worker-absent-pkg` (Debian/Ubuntu)" in message
    assert "`brew install worker-absent` (macOS)" in message


def test_a_program_outside_path_is_found_through_a_glob_of_folders(tmp_path: Path) -> None:
    for version in ("15", "17"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        exe = folder / "worker-fake-initdb"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    binary = Binary("worker-fake-initdb", apt="postgresql", paths=(str(tmp_path / "*" / "bin"),))
    assert require_binary(binary) == str(tmp_path / "17" / "bin" / "worker-fake-initdb")  # the highest version


def test_no_install_hint_still_says_what_to_do() -> None:
    assert Binary("x").install_hint() == "install x and put it on PATH"


SUITE = """
from __future__ import annotations

import pytest
from worker_core.testing.binaries import Binary, register_marker, require_binaries_for

ABSENT = Binary("worker-no-such-program", apt="worker-absent-pkg")
ALWAYS = Binary({always!r}, apt="worker-always-pkg")


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    require_binaries_for(session.items, ALWAYS)
"""

TESTS = """
import pytest
from conftest import ABSENT

def test_plain() -> None:
    assert True

@pytest.mark.needs_binary(ABSENT)
def test_needs_it_1() -> None:
    assert True

@pytest.mark.needs_binary(ABSENT)
def test_needs_it_2() -> None:
    assert True
"""


def run_suite(tmp_path: Path, *args: str, always: str = "sh") -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(SUITE.format(always=always)))
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(TESTS))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_suite_missing_a_program_stops_with_one_message_and_runs_nothing(tmp_path: Path) -> None:
    done = run_suite(tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert output.count("worker-no-such-program") == 1
    assert "`sudo apt-get install worker-absent-pkg`" in output
    assert "passed" not in output


def test_tests_deselected_do_not_ask_for_their_program(tmp_path: Path) -> None:
    done = run_suite(tmp_path, "-k", "plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 2 deselected" in done.stdout


def test_a_program_every_test_needs_is_checked_for_any_test(tmp_path: Path) -> None:
    done = run_suite(tmp_path, "-k", "plain", always="worker-always-missing")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "worker-always-missing: install it with `sudo apt-get install worker-always-pkg`" in done.stderr
