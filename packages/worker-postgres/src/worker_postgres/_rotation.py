"""This node's place in the weighted round robin across queues, carried over from one claim to the next.

A queue serves ``weight`` tasks per round. The claim statement orders its candidates by round
(``(rank - 1 + offset) / weight``), then by the rotation (queues after the cursor first), then by rank; after a
claim the last queue served keeps its turn until it has used its weight, so weights hold even when every claim
asks for one task. The state is per backend instance (per node), like worker-redis's smooth round robin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ("Rotation",)


class Rotation:
    """Queue weights and the round-robin position."""

    __slots__ = ("_after", "_cursor", "_offsets", "weights")

    def __init__(self) -> None:
        self.weights: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._cursor = ""
        self._after = False

    def configure(self, weights: Mapping[str, int]) -> None:
        """New weights (missing queues weigh 1); the position starts over."""
        self.weights = dict(weights)
        self._offsets = {}

    def params(self) -> dict[str, Any]:
        """The claim statement's round-robin parameters."""
        names = sorted(self.weights.keys() | self._offsets.keys())
        return {
            "cursor": self._cursor,
            "after": self._after,
            "wnames": names,
            "wweights": [self.weights.get(n, 1) for n in names],
            "woffs": [self._offsets.get(n, 0) for n in names],
        }

    def advance(self, served: list[str], limit: int) -> None:
        """Record the queues of one claim's leases, in claim order (``limit`` was asked for)."""
        if len(served) < limit or not served:
            self._offsets = {}  # every queue ran dry: the next claim starts a fresh round where this one stopped
            if served:
                self._cursor, self._after = served[-1], True
            return
        last = served[-1]
        count = 0
        for name in reversed(served):
            if name != last:
                break
            count += 1
        offset = (self._offsets.get(last, 0) + count) % self.weights.get(last, 1)
        self._offsets = {last: offset} if offset else {}
        self._cursor, self._after = last, not offset

    def statistics(self) -> dict[str, Any]:
        """The position, for debugging."""
        return {"cursor": self._cursor, "offsets": dict(self._offsets)}
