"""Claiming: the one-statement dequeue (``SKIP LOCKED``, round robin across queues), and waiting for work.

The claim dead-letters a task past its delivery limit itself; a row that does not decode is leased and then
dead-lettered here with its reason. The outcomes of both are stored (a courtesy: the DLQ entry is what counts)
while ``configure_outcomes`` keeps them. Between claims, ``wait_for_work`` sleeps until a NOTIFY or until the
next task the last claim saw is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, final

from worker_core.durable.outcomes import DEFAULT_RESULT_TTL, TaskOutcome, dead_letter_outcome
from worker_core.durable.types import DurableTask, DurableTaskLease
from worker_core.errors import WorkerError

from ._connect import positive_seconds
from ._listen import Listener
from ._pool import Pool
from ._results import Results
from ._rotation import Rotation
from ._rows import parse_claim
from ._settle import Settler
from ._sql import Statements

__all__ = ("Claimer",)

logger = logging.getLogger("worker_postgres.backend")  # the name its records had before the claim moved here


@final
class Claimer:
    """The claims of one backend: its round-robin position and what the last claim said about the next due task.

    Args:
        pool, statements, listener, results: the backend's.
        settler: dead-letters the corrupt rows a claim leased.
        owner: the node id lease tokens start with.
        extra_deliveries: deliveries beyond ``retries + 1`` before the claim dead-letters a task.
        queues: lease only from these queues (``None``: every queue).
        listen: whether ``wait_for_work`` waits for NOTIFY (else it sleeps).
        pool_timeout: seconds ``wait_for_work`` waits for the LISTEN connection at most.
        prune: the dead-letter retention parameters of the claim.
    """

    def __init__(
        self,
        pool: Pool,
        statements: Statements,
        listener: Listener,
        results: Results,
        settler: Settler,
        *,
        owner: str,
        extra_deliveries: int,
        queues: Sequence[str] | None,
        listen: bool,
        pool_timeout: float,
        prune: Mapping[str, Any],
    ) -> None:
        self._pool = pool
        self._sql = statements
        self._listener = listener
        self._results = results
        self._settler = settler
        self._owner = owner
        self._extra = extra_deliveries
        self._only = list(queues) if queues is not None else None
        self._listen = listen
        self._pool_timeout = pool_timeout
        self._prune = dict(prune)
        self._rotation = Rotation()
        self._due_at: float | None = None  # monotonic time the next task may be due (from the last claim)
        self._seen = 0
        self._outcome_ttl: float | None = DEFAULT_RESULT_TTL

    @property
    def weights(self) -> dict[str, int]:
        """The queue weights (a copy)."""
        return dict(self._rotation.weights)

    def configure_weights(self, weights: Mapping[str, int]) -> None:
        """Share claims among queues by ``weights`` (normalised names); the round robin starts over."""
        self._rotation.configure(weights)

    def configure_outcomes(self, ttl: float | None) -> None:
        """Keep the outcomes of the tasks a claim dead-letters for ``ttl`` seconds (``None``: none)."""
        self._outcome_ttl = float(ttl) if ttl is not None and ttl > 0 and math.isfinite(ttl) else None

    def statistics(self) -> dict[str, Any]:
        """The round-robin position."""
        return self._rotation.statistics()

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """Lease up to ``limit`` due tasks or expired leases for ``lease`` seconds, in one statement."""
        lease_s = positive_seconds(lease, "lease")
        limit = max(1, int(limit))
        await self._pool.check()
        self._seen = self._listener.generation
        params = {
            **self._rotation.params(),
            "only": self._only,
            "limit": limit,
            "extra": self._extra,
            "lease": lease_s,
            "node": self._owner,  # a lease token starts with the node id: "<node>/<random>" (TaskRecord.leased_by)
            **self._prune,
        }
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(self._sql.claim, params)).fetchall()
        claimed = parse_claim(rows)
        self._due_at = None if claimed.due_in is None else time.monotonic() + claimed.due_in
        self._rotation.advance([lease.task.queue for lease in claimed.leases], limit)
        for task, _, why in claimed.dead:
            logger.warning("durable task %s dead-lettered: %s", task.id, why)
        if claimed.dead and self._outcome_ttl is not None:
            with contextlib.suppress(WorkerError):  # the DLQ entry is stored; its outcome is a courtesy
                await self._results.store([_dead_outcome(t, n, why) for t, n, why in claimed.dead], self._outcome_ttl)
        for poison, why in claimed.corrupt:
            logger.error("durable task %s dead-lettered: %s", poison.lease_id, why)
            with contextlib.suppress(WorkerError):
                if self._outcome_ttl is None:
                    await self._settler.fail(poison, why)
                else:
                    outcome = _dead_outcome(poison.task, poison.attempts, why)
                    await self._settler.fail_with_outcome(poison, why, outcome, self._outcome_ttl)
        return claimed.leases

    async def wait_for_work(self, max_wait: float) -> None:
        """Block until work may be ready (a NOTIFY, or the next due time the last claim saw), ``max_wait`` at most."""
        timeout = max(0.0, float(max_wait))
        if self._due_at is not None:
            timeout = min(timeout, max(self._due_at - time.monotonic(), 0.01))
        if not self._listen:
            await asyncio.sleep(timeout)
            return
        if not await self._listener.ready(min(timeout, self._pool_timeout)):
            return  # LISTEN is down: the caller polls (its max_wait) until it is back
        await self._listener.wait_change(self._seen, timeout)


def _dead_outcome(task: DurableTask, attempts: int, reason: str) -> TaskOutcome:
    assert task.id is not None
    return dead_letter_outcome(
        task.id, reason, handler=task.handler, queue=task.queue, attempts=attempts, metadata=task.metadata
    )
