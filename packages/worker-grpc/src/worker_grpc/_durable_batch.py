"""``RegisterDurableTasks``' store step: idempotency claims, then the whole request in one batch.

The manager's ``register_durable_tasks`` checks each task and hands the valid ones to the backend together
(``BatchEnqueueBackend.enqueue_many``: on Redis one script call per 500 tasks). It sets the id of every task it
accepted and raises one error per other task, in order: that is how each task's outcome is known here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from worker_core.durable import DurableTask

from .errors import IdempotencyConflictError

if TYPE_CHECKING:
    from worker_core import TaskManager

    from .idempotency import IdempotencyCache, IdempotencyClaim

__all__ = ("Built", "store_durable")

#: A checked task of the request, its idempotency key (``""``: none) and the key's signature.
Built: TypeAlias = tuple[DurableTask, str, bytes]


async def store_durable(
    manager: TaskManager, cache: IdempotencyCache | None, built: Sequence[Built], scope: str
) -> tuple[list[uuid.UUID | None], dict[int, Exception]]:
    """Claim the keys (in ``scope``), store the unclaimed tasks in one call.

    Returns per task its id (``None`` when it was not accepted), and by index the error of each task not
    accepted. A key given twice in the request stores its task once; a key is committed only for a task
    that was stored, and released otherwise.
    """
    ids: list[uuid.UUID | None] = [None] * len(built)
    errors: dict[int, Exception] = {}
    claims: dict[str, IdempotencyClaim] = {}
    first_of_key: dict[str, int] = {}  # a key given twice in a request: its first task is stored once
    try:
        if cache is not None:
            # In key order: two requests that share keys never wait for each other's claims in a cycle.
            for key, sig in sorted({(key, sig) for _, key, sig in built if key}):
                try:
                    claims[key] = await cache.claim(key, sig, scope=scope)
                except IdempotencyConflictError as exc:  # another request took the key meanwhile
                    errors.update((index, exc) for index, (_, k, _s) in enumerate(built) if k == key)
                    return ids, errors  # nothing stored yet
        to_store: list[int] = []
        for index, (_, key, _sig) in enumerate(built):
            if key:
                known = claims[key].task_id
                if known is not None:  # durable: the backend owns it; no existence check (go-worker)
                    ids[index] = known
                    continue
                if first_of_key.setdefault(key, index) != index:
                    continue
            to_store.append(index)
        if to_store:
            await _enqueue(manager, built, to_store, ids, errors)
        for index, (_, key, _sig) in enumerate(built):
            first = first_of_key.get(key, index) if key else index
            if first != index:
                if ids[first] is not None:
                    ids[index] = ids[first]
                else:
                    errors[index] = errors[first]
        for key, claim in claims.items():
            position = first_of_key.get(key)
            stored = ids[position] if position is not None else None
            if stored is not None:
                claim.commit(stored)
    finally:
        for claim in claims.values():
            claim.release()  # does nothing for a committed claim: a failed task leaves its key free
    return ids, errors


async def _enqueue(
    manager: TaskManager,
    built: Sequence[Built],
    to_store: Sequence[int],
    ids: list[uuid.UUID | None],
    errors: dict[int, Exception],
) -> None:
    tasks = [built[index][0] for index in to_store]
    try:
        await manager.register_durable_tasks(*tasks)
    except ExceptionGroup as group:
        # The manager sets the id of each task it accepted and raises one error per other task, in order.
        rejected = [index for index in to_store if built[index][0].id is None]
        reasons = list(group.exceptions)
        if len(reasons) != len(rejected):  # pragma: no cover - the manager's documented contract
            reasons = [group] * len(rejected)
        errors.update(zip(rejected, reasons, strict=True))
    except Exception as exc:  # e.g. no durable backend: the request as a whole fails
        for index in to_store:
            if built[index][0].id is None:
                errors[index] = exc
    for index in to_store:
        ids[index] = built[index][0].id
