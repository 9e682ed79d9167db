"""``ForwardingBackend``: a durable backend that hands every call of the core contract to another one.

Subclass it to count calls or inject faults around a real backend (the in-memory one, say) without
copying the forwarding of every method. It forwards the six methods of
:class:`~worker_core.durable.types.DurableBackend` only; add an optional capability (``enqueue_many``,
``release``, ``wait_for_work``, ``configure_queues``, ...) in the subclass when the test wants the manager to
see it, since the manager checks for those with ``isinstance``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from worker_core.durable.types import DurableBackend, DurableTask, DurableTaskLease

__all__ = ("ForwardingBackend",)

B = TypeVar("B", bound=DurableBackend)


class ForwardingBackend(Generic[B]):
    """Forwards ``enqueue``, ``dequeue``, ``ack``, ``nack``, ``fail`` and ``extend`` to ``inner``.

    Args:
        inner: The backend that does the work (e.g. an :class:`~worker_core.testing.InMemoryDurableBackend`).
    """

    def __init__(self, inner: B) -> None:
        self.inner = inner

    async def enqueue(self, task: DurableTask) -> None:
        """``inner.enqueue``."""
        await self.inner.enqueue(task)

    async def dequeue(self, limit: int, lease: float) -> list[DurableTaskLease]:
        """``inner.dequeue``."""
        return await self.inner.dequeue(limit, lease)

    async def ack(self, lease: DurableTaskLease) -> None:
        """``inner.ack``."""
        await self.inner.ack(lease)

    async def nack(self, lease: DurableTaskLease, delay: float) -> None:
        """``inner.nack``."""
        await self.inner.nack(lease, delay)

    async def fail(self, lease: DurableTaskLease, error: str) -> None:
        """``inner.fail``."""
        await self.inner.fail(lease, error)

    async def extend(self, lease: DurableTaskLease, duration: float) -> None:
        """``inner.extend``."""
        await self.inner.extend(lease, duration)
