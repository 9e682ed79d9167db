"""Run examples/redis_worker.py against a private redis-server, the URL passed by environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from worker_redis.testing import REDIS_SERVER, redis_server

pytestmark = pytest.mark.needs_binary(REDIS_SERVER)

EXAMPLES = Path(__file__).resolve().parent.parent


def test_redis_worker_runs_retries_and_dead_letters() -> None:
    with redis_server() as server:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "redis_worker.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "WORKER_REDIS_URL": server.url},
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "completed cat.png -> 640px (delivery 1)" in lines
    assert "completed flaky.jpg -> 320px (delivery 2)" in lines
    assert "completed late.png -> 64px (delivery 1)" in lines
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 1
    assert "notes.txt is not an image" in failed[0]
    assert "dead letter: resize after 2 deliveries: ValueError: notes.txt is not an image" in lines
    assert lines[-1] == "purged: 1 dead letter(s)"
