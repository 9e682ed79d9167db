"""What a durable attempt's outcome means for its lease: ack, nack (retry later, any node) or fail (dead-letter).

- ``COMPLETED``: ack, then the task finishes here.
- ``CANCELLED`` by ``cancel_task``: fail with reason "task cancelled" (dead-lettered), then it finishes here.
- ``CANCELLED`` any other way (a stop, the loop going away): the lease is handed back (``release``, or a
  ``nack`` with no delay), so another node runs the task; this node forgets it.
- a failure or timeout with deliveries left (and not :class:`~worker_core.errors.Abort`): nack with the
  durable backoff (or ``Retry(delay)``); this node forgets it (the next delivery may go anywhere).
- otherwise: fail with the error as the reason, then it finishes here.
- an attempt whose lease this node lost (``LeasedTask.lost``): nothing is settled; this node forgets it.

A backend that is unavailable is retried a few times with a short backoff; after that the lease is left to
expire (the backend redelivers it). A lost lease (another consumer has the task now) is logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from worker_core import task as records
from worker_core.backoff import durable_retry_delay
from worker_core.errors import Abort, LeaseLostError, Retry, error_text
from worker_core.events import Pending
from worker_core.status import TaskStatus

from .outcomes import RESULT_BYTES, ResultStoreBackend, TaskOutcome, outcome_for
from .types import DurableBackend, DurableTaskLease, FailureReason, ReleasableBackend

if TYPE_CHECKING:
    from .leased import LeasedTask

__all__ = ("DurablePolicy", "Finishing")

logger = logging.getLogger("worker_core.durable")

_COMPLETED: Final = TaskStatus.COMPLETED
_CANCELLED: Final = TaskStatus.CANCELLED
_BACKOFF_MAX_S = 5.0
_SETTLE_TRIES = 4  # ack/nack/fail attempts against an unavailable backend before giving up (expiry redelivers)


class Finishing(Protocol):
    """What the policy needs from the engine once a backend call is done."""

    def finish(self, task: LeasedTask, status: TaskStatus, result: Any, error: BaseException | None) -> Pending:
        """Make the task terminal here (result published, hooks run)."""
        ...

    def forget(self, task: LeasedTask) -> None:
        """This node no longer holds the task (it runs again elsewhere, or later)."""
        ...

    def retrying(self, task: LeasedTask, delay_s: float, attempt: int) -> Pending:
        """A retry was scheduled (the on_retry event)."""
        ...


class DurablePolicy:
    """Settles durable attempts against the backend."""

    __slots__ = (
        "_backend",
        "_cancelled",
        "_engine",
        "_max_bytes",
        "_release_done",
        "_store",
        "_ttl_s",
        "retried",
        "settling",
    )

    def __init__(
        self,
        backend: DurableBackend,
        engine: Finishing,
        release_done: Callable[[LeasedTask], None],
        *,
        result_ttl_s: float | None = None,
        result_max_bytes: int = RESULT_BYTES,
    ) -> None:
        self._backend = backend
        # Outcomes go to the result store in the settling call itself (one round trip), when there is one.
        self._store = backend if result_ttl_s and isinstance(backend, ResultStoreBackend) else None
        self._ttl_s = result_ttl_s or 0.0
        self._max_bytes = result_max_bytes
        self._engine = engine
        self._release_done = release_done  # the runtime stops holding the task's lease
        self._cancelled: set[int] = set()  # keys of tasks cancel_task asked to cancel (dead-lettered, not handed back)
        self.settling: set[int] = set()  # keys of tasks whose outcome is being settled (their lease is moving on)
        self.retried = 0

    def cancelled_by_user(self, task: LeasedTask) -> None:
        """``cancel_task`` asked for this task: a cancelled outcome dead-letters it instead of handing it back."""
        self._cancelled.add(records.key(task))

    async def settle(self, task: LeasedTask, status: TaskStatus, result: Any, error: BaseException | None) -> None:
        """Settle one attempt's outcome (see the module docstring)."""
        engine = self._engine
        lease = task.lease
        key = records.key(task)
        self.settling.add(key)
        try:
            if task.lost is not None:
                # The lease is gone (another consumer may run the task): settling it here would be wrong.
                logger.info(
                    "durable task %s ended %s after its lease was lost; not settled here", lease.lease_id, status
                )
                engine.forget(task)
            elif status is _COMPLETED:
                await self.call(lease, "ack", outcome=self._outcome(task, status, result, None))
                await _await(engine.finish(task, _COMPLETED, result, None))
            elif status is _CANCELLED and records.key(task) in self._cancelled:
                await self.call(lease, "fail", "task cancelled", outcome=self._outcome(task, status, None, error))
                await _await(engine.finish(task, _CANCELLED, None, error))
            elif status is _CANCELLED:
                await self.release([lease])
                engine.forget(task)
            elif lease.attempts <= lease.max_retries and not isinstance(error, Abort):
                await self._retry(task, lease, error)
            else:
                reason = reason_of(error)
                logger.error(
                    "durable task %s (%s) failed for good on delivery %d of %d; dead-lettered: %s",
                    lease.lease_id,
                    task.name,
                    lease.attempts,
                    lease.max_retries + 1,
                    reason,
                    exc_info=_exc_info(error),
                )
                await self.call(lease, "fail", reason, outcome=self._outcome(task, status, None, error))
                await _await(engine.finish(task, status, None, error))
        finally:
            self._cancelled.discard(key)
            self.settling.discard(key)
            self._release_done(task)

    async def _retry(self, task: LeasedTask, lease: DurableTaskLease, error: BaseException | None) -> None:
        attempt = lease.attempts
        if isinstance(error, Retry) and error.delay is not None:
            delay = error.delay
        else:
            delay = durable_retry_delay(records.backoff(task), attempt, task.id)
        records.retry_wait(task, error)
        self.retried += 1
        logger.info(
            "durable task %s (%s) delivery %d of %d failed (%s); retrying in %.2fs",
            lease.lease_id,
            task.name,
            attempt,
            lease.max_retries + 1,
            reason_of(error) if error is not None else "failed",
            delay,
            exc_info=_exc_info(error),
        )
        await _await(self._engine.retrying(task, delay, attempt))
        await self.call(lease, "nack", delay)
        # The next delivery may go to any node: this node forgets the task (no never-ending RETRYING entry).
        self._engine.forget(task)

    def _outcome(
        self, task: LeasedTask, status: TaskStatus, result: Any, error: BaseException | None
    ) -> TaskOutcome | None:
        """What the result store keeps of this settled attempt (``None``: no store, or storing is off)."""
        if self._store is None:
            return None
        started = task.started_at
        return outcome_for(
            task.lease,
            status,
            result,
            error,
            started_at=started.timestamp() if started else 0.0,
            max_bytes=self._max_bytes,
        )

    async def call(
        self, lease: DurableTaskLease, op: str, arg: Any = None, *, outcome: TaskOutcome | None = None
    ) -> None:
        """ack/nack/fail (with ``outcome`` stored in the same call), retried on an unavailable backend.

        A lost lease is logged, never raised.
        """
        backend = self._backend
        store = self._store if outcome is not None else None
        for attempt in range(1, _SETTLE_TRIES + 1):
            try:
                if store is not None and outcome is not None and op == "ack":
                    await store.ack_with_outcome(lease, outcome, self._ttl_s)
                elif store is not None and outcome is not None and op == "fail":
                    await store.fail_with_outcome(
                        lease, arg if isinstance(arg, str) else str(arg), outcome, self._ttl_s
                    )
                elif op == "ack":
                    await backend.ack(lease)
                elif op == "nack":
                    await backend.nack(lease, float(arg))
                else:
                    await backend.fail(lease, arg if isinstance(arg, str) else str(arg))  # a FailureReason stays one
                return
            except LeaseLostError:
                logger.warning("durable %s of task %s: lease lost (another consumer has it)", op, lease.lease_id)
                return
            except Exception as exc:
                if attempt == _SETTLE_TRIES:
                    logger.error(
                        "durable %s of task %s failed %d times (%s); the lease will expire and redeliver",
                        op,
                        lease.lease_id,
                        attempt,
                        type(exc).__name__,
                        exc_info=exc,
                    )
                    return
                logger.warning("durable %s of task %s failed (%s); retrying", op, lease.lease_id, type(exc).__name__)
                await asyncio.sleep(min(_BACKOFF_MAX_S, 0.05 * 2**attempt))

    async def release(self, leases: Sequence[DurableTaskLease]) -> None:
        """Hand ``leases`` back at once (``release`` when the backend can, else a nack without delay each)."""
        if not leases:
            return
        backend = self._backend
        if isinstance(backend, ReleasableBackend):
            try:
                await backend.release(leases)
                return
            except Exception as exc:
                logger.warning(
                    "durable release of %d leases failed (%s); nacking them", len(leases), type(exc).__name__
                )
        for lease in leases:
            await self.call(lease, "nack", 0.0)


def reason_of(error: BaseException | None) -> str:
    """The dead-letter reason for ``error``: its type and message, carrying its type and a bounded traceback."""
    if error is None:
        return "failed"
    text = error_text(error)
    name = type(error).__name__
    formatted = "".join(traceback.format_exception(error)) if error.__traceback__ is not None else ""
    return FailureReason(f"{name}: {text}" if text else name, _qualified(type(error)), formatted)


def _qualified(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def _exc_info(error: BaseException | None) -> BaseException | None:
    """``exc_info`` for a log record: the error itself, unless it is a control-flow signal without a traceback."""
    if error is None or (isinstance(error, Retry) and error.__traceback__ is None):
        return None
    return error


async def _await(pending: Pending) -> None:
    if pending is not None:
        await pending
