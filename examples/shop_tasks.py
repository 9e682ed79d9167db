"""The declarations a producer and a worker share: payload types and durable task types, no handler code.

Used by ``durable_results.py`` (the producer) and ``shop_worker.py`` (the worker process).
"""

from __future__ import annotations

import msgspec
from worker_core import DurableTaskType


class Order(msgspec.Struct):
    order_id: str
    amount_cents: int


charge = DurableTaskType("charge", Order, queue="payments", retries=0)
