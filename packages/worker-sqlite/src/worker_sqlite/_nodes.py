"""The node registry in the ``nodes`` table: this backend's heartbeat (``NodeRegistryBackend``), the live nodes.

A registered backend heartbeats inside transactions it makes anyway: the first dequeue after
:meth:`Node.register` writes its row, every lease renewal (``extend_many``) refreshes it. A row expires after
twice the lease duration (a minute when a dequeue wrote it); each heartbeat deletes the expired rows of every node.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

from worker_core.admin import NodeInfo, parse_weights

from ._conn import Op
from ._rows import as_int, as_str, json_object, ms

__all__ = ("Heartbeat", "Node", "beat", "live_nodes", "node_info", "node_record")

#: What :func:`beat` writes for a node: (node id, info JSON, seconds until the row expires).
Heartbeat = tuple[str, str, float]
Run = Callable[[Op], Awaitable[Any]]


@final
class Node:
    """This backend's registration: the info its row carries, the count of held leases, whether it is written yet.

    Args:
        node_id: the backend's owner id (the ``nodes`` row's id, the prefix of its lease tokens).
        write: runs an operation in the backend's write transaction.
    """

    def __init__(self, node_id: str, write: Run) -> None:
        self.id = node_id
        self._write = write
        self._info: dict[str, object] = {}
        self._held: Callable[[], int] | None = None
        self._fresh = False  # registered but not yet written: the next dequeue writes it

    @property
    def registered(self) -> bool:
        """Whether this backend heartbeats as a node."""
        return bool(self._info)

    def register(self, info: Mapping[str, object], held: Callable[[], int], weights: Mapping[str, int]) -> None:
        """Heartbeat from now on: at the next dequeue, then with every lease renewal."""
        self._info = {**info, "weights": dict(weights)}
        self._held = held
        self._fresh = True

    async def unregister(self) -> None:
        """Leave the node list now (nothing when not registered)."""
        if not self._info:
            return
        self._info = {}
        self._fresh = False
        node = self.id
        await self._write(lambda db: db.execute("DELETE FROM nodes WHERE id = ?", (node,)))

    def first_beat(self) -> Heartbeat | None:
        """The heartbeat the next dequeue writes: only while the registration is not written yet."""
        return self._beat(0) if self._fresh else None

    def renewal_beat(self, lease_s: float) -> Heartbeat | None:
        """The heartbeat a renewal of ``lease_s`` seconds writes (``None``: not registered)."""
        return self._beat(lease_s) if self._info else None

    def written(self) -> None:
        """A heartbeat committed: the next dequeue needs none."""
        self._fresh = False

    def _beat(self, lease_s: float) -> Heartbeat:
        held = self._held() if self._held is not None else 0
        ttl = max(2 * lease_s, 60.0 if lease_s <= 0 else 1.0)
        return self.id, node_info(self._info, self.id, int(held)), ttl


def node_info(info: Mapping[str, object], node: str, running: int) -> str:
    """The JSON a node row keeps."""
    return json.dumps({**info, "id": node, "running": running}, separators=(",", ":"), default=str)


def beat(db: sqlite3.Connection, node: str, info: str, ttl: float, *, now: float, leases: int) -> None:
    """Record a heartbeat of ``node`` (``leases < 0``: keep the count) and drop nodes whose heartbeat expired."""
    db.execute("DELETE FROM nodes WHERE expires_at <= ?", (now,))
    db.execute(
        "INSERT INTO nodes (id, info, last_seen, expires_at, leases) VALUES (?, ?, ?, ?, MAX(?, 0)) "
        "ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen, "
        "expires_at = excluded.expires_at, leases = CASE WHEN ? < 0 THEN nodes.leases ELSE excluded.leases END",
        (node, info, now, now + ttl, leases, leases),
    )


def live_nodes(db: sqlite3.Connection, now: float) -> list[Sequence[Any]]:
    """The rows of the nodes whose heartbeat has not expired, newest heartbeat first (at most 1,000)."""
    return db.execute(
        "SELECT id, info, last_seen, leases FROM nodes WHERE expires_at > ? ORDER BY last_seen DESC LIMIT 1000",
        (now,),
    ).fetchall()


def node_record(row: Sequence[Any]) -> NodeInfo:
    """A node from its row ``(id, info, last_seen, leases)``."""
    node_id, info, last_seen, leases = row
    data = json_object(info)
    queues = data.get("queues")
    return NodeInfo(
        id=as_str(node_id),
        host=str(data.get("host", "")),
        pid=as_int(data.get("pid")),
        started_ms=ms(data.get("started")),
        queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
        running=as_int(data.get("running", leases)),
        last_seen_ms=ms(last_seen),
        weights=parse_weights(data.get("weights")),
    )
