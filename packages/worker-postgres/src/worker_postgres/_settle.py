"""Settling leases: ack (coalesced, ``_acks.py``), nack, fail, extend, the batched renewal with the heartbeat, release.

Each is one statement fenced by the lease token: a lease that is no longer current raises
:class:`~worker_core.errors.LeaseLostError` and changes nothing (``release`` and ``extend_many`` skip it).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from worker_core.durable.outcomes import TaskOutcome
from worker_core.durable.types import DEAD_PRUNE_LIMIT, DurableTaskLease, dead_ttl_seconds
from worker_core.errors import LeaseLostError

from ._acks import AckBatcher, PendingAck
from ._connect import positive_seconds
from ._nodes import NodeRegistration
from ._pool import Pool
from ._sql import Statements

__all__ = ("CLEANUP_BATCH", "Settler", "prune_params", "reason")

#: Expired outcomes one renewal (the heartbeat) deletes at most.
CLEANUP_BATCH: Final = 500


@final
class Settler:
    """The settling statements of one backend, and its pending acks.

    Args:
        pool: the backend's pool.
        statements: the backend's statements.
        node: the backend's node registration (its heartbeat rides on the renewal).
        prune: the dead-letter retention parameters of the statements that dead-letter.
    """

    def __init__(self, pool: Pool, statements: Statements, node: NodeRegistration, prune: Mapping[str, Any]) -> None:
        self._pool = pool
        self._sql = statements
        self._node = node
        self._prune = dict(prune)
        self._acks = AckBatcher(self._send_acks)

    def __len__(self) -> int:
        """The acks waiting for their statement."""
        return len(self._acks)

    async def drain(self) -> None:
        """Wait until every queued ack was sent."""
        await self._acks.drain()

    async def ack(self, lease: DurableTaskLease) -> None:
        """Delete the task; concurrent acks share a statement."""
        await self._acks.ack(PendingAck(fence(lease)["id"], lease))

    async def ack_with_outcome(self, lease: DurableTaskLease, outcome: TaskOutcome, ttl: float) -> None:
        """:meth:`ack` and store ``outcome`` for ``ttl`` seconds in the same statement."""
        ttl_s = positive_seconds(ttl, "result ttl")
        await self._acks.ack(PendingAck(fence(lease)["id"], lease, outcome.encode(), ttl_s))

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """Make the task ready again after ``delay`` seconds (negative: now)."""
        delay_s = float(delay) if math.isfinite(float(delay)) else 0.0
        await self._fenced(self._sql.nack, {**fence(lease), "delay": max(delay_s, 0.0)})

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """Dead-letter the task with ``error``; the statement prunes expired dead tasks."""
        await self._fenced(self._sql.fail, {**fence(lease), **reason(error), **self._prune})

    async def fail_with_outcome(self, lease: DurableTaskLease, error: str, outcome: TaskOutcome, ttl: float) -> None:
        """:meth:`fail` and store ``outcome`` for ``ttl`` seconds in the same statement."""
        params = {**fence(lease), **reason(error), "ttl": positive_seconds(ttl, "result ttl"), "data": outcome.encode()}
        params.update(self._prune)
        await self._fenced(self._sql.fail_outcome, params)

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """Push the lease's expiry to now + ``duration`` seconds."""
        seconds = positive_seconds(duration, "lease duration")
        lease.expires_at = float(await self._fenced(self._sql.extend, {**fence(lease), "duration": seconds}))

    async def extend_many(self, leases: Sequence[DurableTaskLease], duration: float) -> list[bool]:
        """Renew every lease in one statement with the node's heartbeat; per lease, whether it is still held."""
        seconds = positive_seconds(duration, "lease duration")
        if not leases and not self._node.registered:
            return []
        await self._pool.check()
        fences = [fence_or_none(lease) for lease in leases]
        node, info = self._node.heartbeat(len(leases))
        params = {
            "ids": [f[0] for f in fences if f is not None],
            "tokens": [f[1] for f in fences if f is not None],
            "duration": seconds,
            "node": node,
            "info": info,
            "node_ttl": max(2 * seconds, 1.0),
            "cleanup": CLEANUP_BATCH,
        }
        async with self._pool.connection() as conn:
            row = await (await conn.execute(self._sql.extend_many, params)).fetchone()
        held_ids = set(row[0]) if row is not None else set()
        expires = float(row[1]) if row is not None else 0.0
        out = []
        for lease in leases:
            ok = lease.lease_id in held_ids
            if ok and expires:
                lease.expires_at = expires
            out.append(ok)
        return out

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Hand leases back now, the delivery not counted; lost leases are skipped."""
        fences = [f for f in map(fence_or_none, leases) if f is not None]
        if not fences:
            return
        await self._pool.check()
        async with self._pool.connection() as conn:
            await conn.execute(self._sql.release, {"ids": [f[0] for f in fences], "tokens": [f[1] for f in fences]})

    async def _send_acks(self, acks: Sequence[PendingAck]) -> set[str]:
        await self._pool.check()
        params = {
            "ids": [a.id for a in acks],
            "tokens": [str(a.lease.token) for a in acks],
            "ttls": [a.ttl for a in acks],
            "data": [a.outcome for a in acks],
        }
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(self._sql.ack_many, params)).fetchall()
        return {row[0] for row in rows}

    async def _fenced(self, statement: Any, params: dict[str, Any]) -> Any:
        await self._pool.check()
        async with self._pool.connection() as conn:
            row = await (await conn.execute(statement, params)).fetchone()
        if row is None:
            raise LeaseLostError(f"lease of durable task {params['id']} is lost")
        return row[0]


def prune_params(dead_ttl: float | None) -> dict[str, Any]:
    """The dead-letter retention parameters of the claim and the fail statements (``dead_ttl``: as the backend's).

    A statement that dead-letters a task deletes up to ``prune`` of the dead tasks older than ``dead_ttl``.
    """
    return {"dead_ttl": dead_ttl_seconds(dead_ttl), "prune": DEAD_PRUNE_LIMIT}


def fence(lease: DurableTaskLease) -> dict[str, Any]:
    """The fence parameters (``id``, ``token``) of ``lease``; LeaseLostError when its id is not a task id."""
    try:
        task_id = uuid.UUID(lease.lease_id)
    except (TypeError, ValueError, AttributeError):
        raise LeaseLostError(f"lease of durable task {lease.lease_id!r} is lost (not a task id)") from None
    return {"id": task_id, "token": str(lease.token)}


def fence_or_none(lease: DurableTaskLease) -> tuple[uuid.UUID, str] | None:
    """The (id, token) of ``lease``; ``None`` when its id is not a task id."""
    try:
        return uuid.UUID(lease.lease_id), str(lease.token)
    except (TypeError, ValueError, AttributeError):
        return None


def reason(error: str) -> dict[str, str]:
    """The ``error``, ``error_type`` and ``traceback`` parameters of a dead-lettering statement (NUL-free)."""
    text = str(error).replace("\x00", "\\x00")
    kind = str(getattr(error, "error_type", "") or "").replace("\x00", "")
    trace = str(getattr(error, "traceback", "") or "").replace("\x00", "\\x00")
    return {"error": text, "error_type": kind, "traceback": trace}
