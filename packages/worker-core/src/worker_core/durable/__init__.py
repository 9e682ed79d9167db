"""Durable tasks: the records and backend contract, handler specs and typed registries, and codecs.

A backend stores :class:`DurableTask` records and hands them out as leases (:class:`DurableTaskLease`).
Delivery is at least once: a lease that is not acked before it expires is handed out again.
Every lease carries a fencing ``token``; ``ack``/``nack``/``fail``/``extend`` with a lease whose
token is no longer current (the lease expired and the task went to another consumer) raise
:class:`~worker_core.errors.LeaseLostError` and change nothing.
"""

from __future__ import annotations

from .codecs import DurableCodec as DurableCodec
from .codecs import MsgspecJsonCodec as MsgspecJsonCodec
from .codecs import MsgspecMsgpackCodec as MsgspecMsgpackCodec
from .codecs import PayloadSpec as PayloadSpec
from .codecs import ProtobufCodec as ProtobufCodec
from .codecs import builtin_codecs as builtin_codecs
from .codecs import default_codec_for as default_codec_for
from .codecs import resolve_codec as resolve_codec
from .handlers import DurableHandlerSpec as DurableHandlerSpec
from .handlers import SpecFactory as SpecFactory
from .handlers import TypedDurableRegistry as TypedDurableRegistry
from .handlers import TypedHandlerRegistry as TypedHandlerRegistry
from .handlers import spec_payload_type as spec_payload_type
from .types import DEAD_PRUNE_LIMIT as DEAD_PRUNE_LIMIT
from .types import DEFAULT_DEAD_TTL as DEFAULT_DEAD_TTL
from .types import DEFAULT_EXTRA_DELIVERIES as DEFAULT_EXTRA_DELIVERIES
from .types import BatchEnqueueBackend as BatchEnqueueBackend
from .types import BatchExtendBackend as BatchExtendBackend
from .types import DurableBackend as DurableBackend
from .types import DurableTask as DurableTask
from .types import DurableTaskLease as DurableTaskLease
from .types import FailureReason as FailureReason
from .types import IdempotencyKeyBackend as IdempotencyKeyBackend
from .types import NodeRegistryBackend as NodeRegistryBackend
from .types import QueueConfigurableBackend as QueueConfigurableBackend
from .types import QueueSettingsBackend as QueueSettingsBackend
from .types import ReleasableBackend as ReleasableBackend
from .types import WakeableBackend as WakeableBackend
from .types import dead_ttl_from_text as dead_ttl_from_text
from .types import dead_ttl_seconds as dead_ttl_seconds
from .types import delivery_limit as delivery_limit

__all__ = (
    "DEAD_PRUNE_LIMIT",
    "DEFAULT_DEAD_TTL",
    "DEFAULT_EXTRA_DELIVERIES",
    "BatchEnqueueBackend",
    "BatchExtendBackend",
    "DurableBackend",
    "DurableCodec",
    "DurableHandlerSpec",
    "DurableTask",
    "DurableTaskLease",
    "FailureReason",
    "IdempotencyKeyBackend",
    "MsgspecJsonCodec",
    "MsgspecMsgpackCodec",
    "NodeRegistryBackend",
    "PayloadSpec",
    "ProtobufCodec",
    "QueueConfigurableBackend",
    "QueueSettingsBackend",
    "ReleasableBackend",
    "SpecFactory",
    "TypedDurableRegistry",
    "TypedHandlerRegistry",
    "WakeableBackend",
    "builtin_codecs",
    "dead_ttl_from_text",
    "dead_ttl_seconds",
    "default_codec_for",
    "delivery_limit",
    "resolve_codec",
    "spec_payload_type",
)
