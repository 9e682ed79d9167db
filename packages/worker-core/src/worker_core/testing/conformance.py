"""A reusable pytest suite that checks a durable backend against the whole contract.

A backend's tests subclass :class:`DurableBackendConformance` and provide a ``backend`` fixture (sync or
async; pytest-asyncio's auto mode runs the async tests). Time passes through :meth:`advance`, which
really sleeps by default; a backend with an injectable clock overrides it (and :meth:`now`) to move a
:class:`~worker_core.testing.FakeClock` instead. Dead letters are read through :meth:`dead_letters`,
which uses ``backend.dead_letters()`` when the backend has it; override it otherwise::

    import pytest
    from worker_core.testing import DurableBackendConformance


    class TestRedisConformance(DurableBackendConformance):
        @pytest.fixture
        async def backend(self, redis_url):
            backend = RedisDurableBackend.from_url(redis_url)
            yield backend
            await backend.close()

        async def dead_letters(self, backend):
            return {entry.id: entry.last_error for entry in await backend.admin_dlq()}

With real time, the lease-expiry tests wait about ``lease`` (0.5 s) or ``delay`` (0.5 s) each, then poll
for the expected state with a generous deadline (``patience`` seconds), so a slow machine makes them
slower, not flaky. Dead-letter retention needs ``age_dead_letters`` (set a dead task's failure time back in
the store); its tests skip without it. Optional protocols (``BatchEnqueueBackend``, ``ReleasableBackend``,
``QueueConfigurableBackend``, ``ResultStoreBackend``) are tested when the backend implements them and skipped otherwise.
"""

from __future__ import annotations

from .conformance_base import ConformanceBase
from .conformance_dead import DeadRetentionConformance
from .conformance_leases import LeaseConformance
from .conformance_queue import QueueConformance
from .conformance_results import ResultConformance

__all__ = (
    "ConformanceBase",
    "DeadRetentionConformance",
    "DurableBackendConformance",
    "LeaseConformance",
    "QueueConformance",
    "ResultConformance",
)


class DurableBackendConformance(QueueConformance, LeaseConformance, ResultConformance, DeadRetentionConformance):
    """Contract tests for a :class:`~worker_core.durable.types.DurableBackend`; subclass and add a ``backend`` fixture.

    The tests come by topic (:class:`QueueConformance`, :class:`LeaseConformance`, :class:`ResultConformance`,
    :class:`DeadRetentionConformance`; a backend may subclass one of them alone). Overridable (see
    :class:`ConformanceBase`): ``lease``, ``delay``, ``patience``, ``advance``, ``now``, ``dead_letters`` and
    ``extra_deliveries``; for dead-letter retention, ``dead_ttl`` and ``age_dead_letters`` (its tests skip without
    it).
    """
