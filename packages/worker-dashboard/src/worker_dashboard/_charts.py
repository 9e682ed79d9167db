"""Server-drawn charts: an SVG polyline's points for a series (no JavaScript charting library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ("Spark", "sparkline")


@dataclass(frozen=True, slots=True)
class Spark:
    """A series scaled into a ``width`` x ``height`` box: ``points`` for ``<polyline>``, and its peak."""

    points: str
    peak: float
    width: int
    height: int
    count: int


def sparkline(values: Sequence[float], *, width: int = 240, height: int = 40, top: float | None = None) -> Spark:
    """Scale ``values`` (oldest first) to the box; ``top`` fixes the scale (1.0 for a rate), else the peak."""
    peak = max(values, default=0.0)
    scale = top if top is not None else peak
    if len(values) < 2:
        return Spark("", peak, width, height, len(values))
    step = width / (len(values) - 1)
    pts = []
    for i, v in enumerate(values):
        y = height - (v / scale * (height - 2) if scale > 0 else 0.0) - 1
        pts.append(f"{i * step:.1f},{y:.1f}")
    return Spark(" ".join(pts), peak, width, height, len(values))
