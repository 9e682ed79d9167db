"""The example tests that start a private redis-server are marked; one message when it is not installed."""

from __future__ import annotations

import pytest
from worker_core.testing.binaries import register_marker, require_binaries_for


def pytest_configure(config: pytest.Config) -> None:
    register_marker(config)


def pytest_collection_finish(session: pytest.Session) -> None:
    require_binaries_for(session.items)
