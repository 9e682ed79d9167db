"""Every Redis key the durable backend touches: go-worker's layout (the README's "Key layout"), plus our additive keys.

``P`` is the prefix wrapped in a hash tag (``{go-worker}``), so every key of one deployment lives in
one Redis Cluster slot and every Lua script may touch any of them.

============================  ======  ==============================================================
key                           type    content
============================  ======  ==============================================================
``P:ready:<queue>``           ZSET    task id -> ready-at epoch ms
``P:processing:<queue>``      ZSET    task id -> lease-expiry epoch ms
``P:task:<uuid>``             HASH    the task record (go-worker's fields, plus ``lease_token``)
``P:dead``                    LIST    dead-lettered task ids, newest at the head (LPUSH); expired ones pruned
``P:queues``                  SET     known queue names (ours: forgotten after 15 minutes without a task)
``P:queues:idle``             HASH    ours: queue name -> epoch ms since which it has had no task
``P:queues:forgotten``        ZSET    ours: queue name -> epoch ms it was forgotten (the 10,000 latest, kept 30
                                      days): an admin may still pause such a queue before its next task
``P:paused``                  STRING  ``"1"`` pauses every dequeue
``P:paused_queues``           SET     paused queue names
``P:wake``                    LIST    ours: wake-up tokens for idle workers (BLPOP), capped
``P:quarantine``              HASH    ours: key or id -> reason, for records too broken to dead-letter
``P:nodes``                   ZSET    ours: worker node id -> expiry epoch ms of its last heartbeat
``P:node:<id>``               HASH    ours: ``info`` (JSON: host, pid, started, queues, weights),
                                      ``last_seen_ms``, ``leases``, ``running``; expires with the heartbeat
``P:dequeue:<request>``       LIST    ours: ids one dequeue call leased, kept for a lease so that a
                                      call re-sent after a lost reply returns the same leases
``P:enqueue:<request>``       STRING  ours: an enqueue call's result, kept 60 s for a re-sent call
``P:ack:<request>``           STRING  ours: an ack call's result, kept 60 s for a re-sent call
``P:result:<uuid>``           STRING  ours: a finished task's outcome (``TaskOutcome`` JSON), ``PX`` its TTL;
                                      written by the ack or fail script that settled the task
``P:recent:<queue>``          LIST    ours: ids of the queue's latest outcomes, newest at the head, trimmed to
                                      the backend's bound; expires with the latest outcome's TTL
``P:done:<uuid>``             channel ours: the outcome, published (``SPUBLISH``) when it is stored
``P:schedules``               HASH    ours: schedule name -> JSON record (spec, tz, queue, missed, published_ms)
``P:schedule:tick:<n>:<ms>``  STRING  ours: the marker of one schedule tick (the task id), ``PX`` a few
                                      periods (at least 60 s): a tick is enqueued once, by whichever node
``P:schedule:last``           HASH    ours: schedule name -> the latest tick enqueued (epoch ms)
``P:schedule:paused``         SET     ours: paused schedule names
``P:schedule:runs``           HASH    ours: schedule name -> run request time (ms); one node takes each
``P:admin:schedule_events:<n>`` LIST  go-worker's key: a schedule's events (JSON), newest first, trimmed
``prefix:global_rate``        HASH    cluster-wide token bucket (go-worker: raw prefix, no braces)
``prefix:leader``             STRING  leader lock owner (go-worker: raw prefix, no braces)
============================  ======  ==============================================================

Task hash fields written by go-worker's enqueue: ``handler, payload, priority, queue, weight, retries,
retry_delay_ms, attempts, ready_at_ms, updated_at_ms, metadata``; later ``lease_at_ms``,
``last_error``, ``failed_at_ms``. Ours (additive): ``lease_token``, ``error_type``, ``error_traceback``,
``dead_reason``. A lease token is ``<node id>/<random>:<n>``: it starts with the id of the node holding the lease
(``P:node:<id>``); go-worker writes none, and a token without a ``/`` names no node.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker_core.errors import ConfigurationError

__all__ = ("DEFAULT_PREFIX", "DEFAULT_QUEUE", "Keys", "normalize_queue", "wrap_prefix")

DEFAULT_PREFIX = "go-worker"
DEFAULT_QUEUE = "default"


def wrap_prefix(prefix: str) -> str:
    """Wrap ``prefix`` in a hash tag as go-worker does; a prefix that already has ``{...}`` is kept."""
    prefix = prefix.strip() or DEFAULT_PREFIX
    if "{" in prefix or "}" in prefix:
        if prefix.count("{") != 1 or prefix.count("}") != 1 or prefix.index("{") > prefix.index("}"):
            raise ConfigurationError(f"redis prefix {prefix!r} has unbalanced braces")
        if prefix.index("}") - prefix.index("{") == 1:
            raise ConfigurationError(f"redis prefix {prefix!r} has an empty hash tag")
        return prefix
    return "{" + prefix + "}"


def normalize_queue(name: str | None, default: str = DEFAULT_QUEUE) -> str:
    """Trim ``name``; blank means ``default``."""
    name = (name or "").strip()
    return name or default


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one prefix; build once per backend, not per task."""

    raw_prefix: str
    prefix: str

    @classmethod
    def for_prefix(cls, prefix: str = DEFAULT_PREFIX) -> Keys:
        """Keys of the deployment named ``prefix`` (``"go-worker"`` -> ``{go-worker}:...``)."""
        raw = prefix.strip() or DEFAULT_PREFIX
        return cls(raw_prefix=raw.replace("{", "").replace("}", ""), prefix=wrap_prefix(raw))

    def ready(self, queue: str) -> str:
        """ZSET of ready task ids of ``queue``."""
        return f"{self.prefix}:ready:{queue}"

    def processing(self, queue: str) -> str:
        """ZSET of leased task ids of ``queue``."""
        return f"{self.prefix}:processing:{queue}"

    def task(self, task_id: str) -> str:
        """HASH of one task."""
        return f"{self.prefix}:task:{task_id}"

    @property
    def task_prefix(self) -> str:
        """``P:task:``, for scripts that build task keys themselves."""
        return f"{self.prefix}:task:"

    @property
    def ready_prefix(self) -> str:
        """``P:ready:``."""
        return f"{self.prefix}:ready:"

    @property
    def processing_prefix(self) -> str:
        """``P:processing:``."""
        return f"{self.prefix}:processing:"

    @property
    def dead(self) -> str:
        """LIST of dead-lettered ids."""
        return f"{self.prefix}:dead"

    @property
    def queues(self) -> str:
        """SET of queue names."""
        return f"{self.prefix}:queues"

    @property
    def queues_forgotten(self) -> str:
        """ZSET of queue names forgotten for want of tasks: name -> when, epoch ms (ours)."""
        return f"{self.prefix}:queues:forgotten"

    @property
    def paused(self) -> str:
        """STRING global pause flag."""
        return f"{self.prefix}:paused"

    @property
    def paused_queues(self) -> str:
        """SET of paused queue names."""
        return f"{self.prefix}:paused_queues"

    @property
    def wake(self) -> str:
        """LIST of wake-up tokens (ours)."""
        return f"{self.prefix}:wake"

    @property
    def quarantine(self) -> str:
        """HASH of records moved aside as unreadable: key or id -> reason (ours)."""
        return f"{self.prefix}:quarantine"

    @property
    def nodes(self) -> str:
        """ZSET of live worker nodes: id -> expiry of the last heartbeat, epoch ms (ours)."""
        return f"{self.prefix}:nodes"

    def node(self, node_id: str) -> str:
        """HASH describing one worker node (ours)."""
        return f"{self.prefix}:node:{node_id}"

    def result(self, task_id: str) -> str:
        """STRING: the stored outcome of one finished task (ours)."""
        return f"{self.prefix}:result:{task_id}"

    def recent(self, queue: str) -> str:
        """LIST of the ids of the latest outcomes of ``queue``, newest first (ours)."""
        return f"{self.prefix}:recent:{queue}"

    def done(self, task_id: str) -> str:
        """Pub/sub channel on which the outcome of one task is published when stored (ours)."""
        return f"{self.prefix}:done:{task_id}"

    @property
    def schedules(self) -> str:
        """HASH of published schedules: name -> JSON record (ours)."""
        return f"{self.prefix}:schedules"

    @property
    def schedule_last(self) -> str:
        """HASH: schedule name -> latest tick enqueued, epoch ms (ours)."""
        return f"{self.prefix}:schedule:last"

    @property
    def schedule_paused(self) -> str:
        """SET of paused schedule names (ours)."""
        return f"{self.prefix}:schedule:paused"

    @property
    def schedule_runs(self) -> str:
        """HASH of pending run requests: schedule name -> request time, epoch ms (ours)."""
        return f"{self.prefix}:schedule:runs"

    def schedule_tick(self, name: str, tick_ms: int) -> str:
        """STRING marker of one schedule tick (ours)."""
        return f"{self.prefix}:schedule:tick:{name}:{tick_ms}"

    def schedule_events(self, name: str) -> str:
        """LIST of a schedule's events, newest first (go-worker's ``P:admin:schedule_events:<name>``)."""
        return f"{self.prefix}:admin:schedule_events:{name}"

    @property
    def global_rate(self) -> str:
        """HASH token bucket; go-worker uses the raw prefix (no hash tag) here."""
        return f"{self.raw_prefix}:global_rate"

    @property
    def leader(self) -> str:
        """STRING leader lock; go-worker uses the raw prefix (no hash tag) here."""
        return f"{self.raw_prefix}:leader"
