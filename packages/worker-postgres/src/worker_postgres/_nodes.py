"""The node registry in the ``nodes`` table: this backend's heartbeat (``NodeRegistryBackend``), the live nodes.

A registered backend heartbeats in its lease renewal (the ``extend_many`` statement writes its row, expiring after
twice the lease duration); rows an hour past their expiry are deleted by every renewal of any node.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Final, final

from worker_core.admin import NodeInfo, parse_weights

from ._browse import ms
from ._pool import Pool
from ._sql import Statements

__all__ = ("LIVE_NODES", "NodeRegistration", "node_record")

#: The live nodes (heartbeat not expired), newest heartbeat first, at most 1,000 (``{s}``: the schema).
LIVE_NODES: Final = """SELECT id, info, extract(epoch FROM last_seen)::float8 FROM {s}.nodes
               WHERE expires_at > clock_timestamp() ORDER BY last_seen DESC LIMIT 1000"""


@final
class NodeRegistration:
    """This backend's registration: the info its row carries and the count of held leases.

    Args:
        node_id: the backend's owner id (the ``nodes`` row's id, the prefix of its lease tokens).
        pool: the backend's pool.
        statements: the backend's statements.
    """

    def __init__(self, node_id: str, pool: Pool, statements: Statements) -> None:
        self.id = node_id
        self._pool = pool
        self._sql = statements
        self._info: dict[str, object] = {}
        self._held: Callable[[], int] | None = None

    @property
    def registered(self) -> bool:
        """Whether this backend heartbeats as a node."""
        return bool(self._info)

    def register(
        self,
        info: Mapping[str, object],
        held: Callable[[], int],
        queues: Sequence[str] | None,
        weights: Mapping[str, int],
    ) -> None:
        """Heartbeat from now on, with every lease renewal (``queues``: the ones it leases from, ``None``: all)."""
        self._info = {**info, "id": self.id, "queues": list(queues or ()) or "all", "weights": dict(weights)}
        self._held = held

    async def unregister(self) -> None:
        """Leave the node list now (nothing when not registered)."""
        if not self._info:
            return
        self._info = {}
        async with self._pool.connection() as conn:
            await conn.execute(self._sql.leave, {"node": self.id})

    def heartbeat(self, leases: int) -> tuple[str, str]:
        """The renewal statement's ``node`` and ``info`` parameters (``""``: no heartbeat, not registered).

        ``leases`` is the count of leases renewed, the running count when ``held`` was not given.
        """
        if not self._info:
            return "", "{}"
        held = self._held() if self._held is not None else leases
        return self.id, json.dumps({**self._info, "running": int(held)}, separators=(",", ":"), default=str)


def node_record(node_id: str, info: object, seen: float) -> NodeInfo:
    """A node from a row of :data:`LIVE_NODES`."""
    data = info if isinstance(info, dict) else {}
    if isinstance(info, str):
        try:
            loaded = json.loads(info)
        except ValueError:
            loaded = {}
        data = loaded if isinstance(loaded, dict) else {}

    def number(value: object) -> float:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0

    queues = data.get("queues")
    return NodeInfo(
        id=node_id,
        host=str(data.get("host", "")),
        pid=int(number(data.get("pid"))),
        started_ms=int(number(data.get("started")) * 1000),
        queues=tuple(str(q) for q in queues) if isinstance(queues, list) else (),
        running=int(number(data.get("running"))),
        last_seen_ms=ms(seen),
        weights=parse_weights(data.get("weights")),
    )
