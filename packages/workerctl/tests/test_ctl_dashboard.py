"""``workerctl dashboard``: hands its arguments to worker-dashboard when installed, says how to get it otherwise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

INSTALLED = importlib.util.find_spec("worker_dashboard") is not None


def workerctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from workerctl.__main__ import main; sys.argv[0] = 'workerctl'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_dashboard_help_names_the_dashboards_flags_installed_or_not() -> None:
    run = workerctl("dashboard", "--help")
    assert run.returncode == 0
    assert run.stdout.startswith("Usage: workerctl dashboard [OPTIONS] [ARGS]...")
    for flag in ("--url", "--listen", "--token", "--read-only", "--redact"):
        assert flag in run.stdout


@pytest.mark.skipif(not INSTALLED, reason="worker-dashboard is not installed in this environment")
def test_dashboard_arguments_reach_the_dashboard() -> None:
    run = workerctl("dashboard", "--url", "redis://127.0.0.1:1/0", "--listen", "nonsense")
    assert run.returncode == 2
    assert "usage: workerctl dashboard" in run.stderr
    assert "--listen must be host:port, not 'nonsense'" in run.stderr


@pytest.mark.skipif(not INSTALLED, reason="worker-dashboard is not installed in this environment")
def test_dashboard_without_a_url_is_a_usage_error() -> None:
    run = workerctl("dashboard", env={})
    assert (run.returncode, run.stderr) == (2, "error: --url (or WORKER_DURABLE_URL) is required\n")


@pytest.mark.skipif(INSTALLED, reason="worker-dashboard is installed in this environment")
def test_dashboard_not_installed_says_what_to_install() -> None:
    run = workerctl("dashboard", "--url", "redis://127.0.0.1:1/0")
    assert run.returncode == 1
    assert run.stderr == "Error: the dashboard needs the worker-dashboard package: pip install worker-dashboard\n"
