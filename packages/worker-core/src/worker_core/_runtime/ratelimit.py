"""A token bucket (golang.org/x/time/rate semantics: starts full, one token per attempt)."""

from __future__ import annotations

__all__ = ("TokenBucket",)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` stored; the bucket starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (fractional)."""
        self._refill(now)
        return self._tokens

    def try_take(self, now: float) -> float:
        """Take one token and return 0.0, or take nothing and return the seconds until one is there."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
