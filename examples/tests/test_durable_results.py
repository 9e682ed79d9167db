"""Run examples/durable_results.py: a producer process and a worker process awaiting each other's results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from worker_redis.testing import REDIS_SERVER, redis_server

pytestmark = pytest.mark.needs_binary(REDIS_SERVER)

EXAMPLES = Path(__file__).resolve().parent.parent


def test_a_producer_awaits_results_a_worker_process_produced() -> None:
    with redis_server() as server:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "durable_results.py")],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            env={**os.environ, "WORKER_REDIS_URL": server.url},
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "enqueued 3 orders; starting a worker process",
        "A-1: {'order': 'A-1', 'charged': 1250, 'attempt': 1}",
        "A-2: failed in the worker: ValueError: order A-2: nothing to charge",
        "A-3: {'order': 'A-3', 'charged': 999, 'attempt': 1}",
        "recent outcomes in payments: completed, completed, failed",
    ]
