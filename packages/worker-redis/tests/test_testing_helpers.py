"""worker_redis.testing without redis-server / redis-cli on PATH: one error naming the program and its package."""

from __future__ import annotations

from pathlib import Path

import pytest
from worker_core.testing.binaries import MissingBinaryError
from worker_redis.testing import REDIS_CLI, REDIS_SERVER, redis_cluster, redis_server


def test_redis_server_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no redis-server on PATH
    with pytest.raises(MissingBinaryError) as caught, redis_server():
        pass
    assert caught.value.missing == (REDIS_SERVER,)
    assert "`sudo apt-get install redis-server` (Debian/Ubuntu)" in str(caught.value)
    assert not list(tmp_path.iterdir())  # nothing was started or written


def test_redis_cli_missing_says_which_package_has_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinaryError) as caught, redis_cluster(3):
        pass
    assert caught.value.missing == (REDIS_CLI,)
    assert "`sudo apt-get install redis-tools`" in str(caught.value)
