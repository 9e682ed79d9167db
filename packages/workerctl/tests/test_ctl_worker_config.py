"""`workerctl worker` configuration: flag > WORKER_* variable > --config file > default, and --check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from ctl_helpers import Ctl
from worker_redis.testing import free_port

from workerctl import cli
from workerctl._node_config import cpu_count, parse_memory

HERE = Path(__file__).parent


def worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "workerctl", "worker", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=HERE,
        timeout=60,
        check=False,
    )


def test_a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default(ctl: Ctl, tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(
        '[worker]\napp = "worker_app:configured"\nconcurrency = 3\nrate = 7\ndefault-queue = "from-file"\n'
        'lease = "9s"\nqueue = ["emails=3", "default"]\n'
    )
    env = {
        "WORKER_TEST_OUT": str(tmp_path),
        "WORKER_CONFIG": str(config),
        "WORKER_REDIS_URL": ctl.url,
        "WORKER_REDIS_PREFIX": ctl.prefix,
        "WORKER_CONCURRENCY": "5",
        "WORKER_RATE": "9",
    }
    proc = worker("-c", "8", "--check", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: app=worker_app:configured durable=redis://127.0.0.1:"), proc.stdout
    seen = json.loads((tmp_path / "options.json").read_text())
    assert seen["max_workers"] == 8  # the flag, over $WORKER_CONCURRENCY=5 and the file's 3
    assert seen["tasks_per_second"] == 9.0  # the variable, over the file's 7
    assert seen["default_queue"] == "from-file"  # the file, over the default (none)
    assert seen["durable_lease"] == 9.0  # a duration written as in a flag
    assert seen["queue_weights"] == {"emails": 3, "default": 1}  # a list for a repeatable flag
    assert "durable_lease_renewal_interval" not in seen  # nowhere: the app's own default


def test_check_fails_with_a_message_when_the_backend_is_unreachable(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    proc = worker("worker_app:create_manager", "--check", env={"WORKER_REDIS_URL": url, "WORKER_TEST_OUT": "."})
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown setting 'nope'"),
        ("concurrency = \n", "is not valid TOML"),
    ],
)
def test_a_bad_config_file_is_a_usage_error(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["worker", "worker_app:create_manager", "--config", str(config)], env={})
    assert result.exit_code == 2
    assert message in result.stderr


def test_process_flags_are_checked_before_anything_starts() -> None:
    for args, message in (
        (["--processes", "0"], "0 is not >= 1"),
        (["--processes", "many"], "neither an integer nor 'auto'"),
        (["--max-memory-per-child", "lots"], "invalid size"),
        (["--processes", "2", "--grpc-listen", "127.0.0.1:0"], "--grpc-listen runs in a single-process node only"),
        ([], "Missing argument 'APP'"),
    ):
        app = [] if not args else ["worker_app:create_manager"]
        result = CliRunner().invoke(cli, ["worker", *app, *args], env={"WORKER_REDIS_URL": None, "WORKER_APP": None})
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


def test_sizes_and_process_counts() -> None:
    assert parse_memory("200MB") == 200_000_000
    assert parse_memory("200MiB") == parse_memory("200m") == 200 * 2**20
    assert parse_memory("1.5G") == int(1.5 * 2**30)
    assert parse_memory("4096") == 4096
    with pytest.raises(ValueError, match="invalid size"):
        parse_memory("12 parsecs")
    assert cpu_count() >= 1
