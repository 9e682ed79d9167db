"""Leak checks for every worker-core test: no asyncio task and no thread may outlive a test."""

from __future__ import annotations

from worker_core.testing.leaks import no_leaked_tasks, no_leaked_threads

__all__ = ("no_leaked_tasks", "no_leaked_threads")  # autouse fixtures, found by name
