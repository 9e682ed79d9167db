"""How long finished tasks stay visible to ``get_task`` (go-worker's RetentionPolicy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import final

from .errors import ConfigurationError
from .task import to_seconds

__all__ = ("RetentionPolicy",)


@final
@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Evict finished tasks from the registry by age and by count; active tasks are never evicted.

    Attributes:
        ttl: Seconds (or a ``timedelta``) a finished task is kept; ``None`` keeps it forever.
        max_entries: Most tasks kept; the oldest finished ones go first. ``None``: no limit.
        cleanup_interval: How often the TTL sweep runs; ``None`` means ``clamp(ttl / 2, 1 s, 60 s)``.
    """

    ttl: float | timedelta | None = None
    max_entries: int | None = None
    cleanup_interval: float | timedelta | None = None

    def normalized(self) -> tuple[float | None, int | None, float]:
        """``(ttl_s, max_entries, interval_s)``, validated.

        Raises:
            ConfigurationError: a negative or mistyped value.
        """
        try:
            ttl = to_seconds(self.ttl, "ttl")
            interval = to_seconds(self.cleanup_interval, "cleanup_interval")
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
        max_entries: object = self.max_entries
        if max_entries is not None and (
            not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1
        ):
            raise ConfigurationError(f"max_entries must be an int >= 1 or None, got {max_entries!r}")
        if interval is None:
            interval = min(max(ttl / 2, 1.0), 60.0) if ttl is not None else 60.0
        return ttl, max_entries if isinstance(max_entries, int) else None, interval
