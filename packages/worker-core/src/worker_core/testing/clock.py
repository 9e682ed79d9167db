"""A clock tests move by hand, so that lease expiry and delays need no real waiting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, final

__all__ = ("Clock", "FakeClock")


class Clock(Protocol):
    """Anything with ``time()`` returning epoch seconds (``time`` module semantics)."""

    def time(self) -> float:
        """The current time, in epoch seconds."""
        ...


@final
class FakeClock:
    """A manual clock: ``time()`` stays put until :meth:`advance` moves it.

    Args:
        start: The initial epoch time in seconds (a fixed, realistic default).
    """

    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self._now = float(start)
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        """The current fake time, in epoch seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` and notify listeners (e.g. a backend waiting for work).

        Raises:
            ValueError: ``seconds`` is negative (time never goes back).
        """
        if seconds < 0:
            raise ValueError("FakeClock.advance: seconds must be >= 0")
        self._now += seconds
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every :meth:`advance`."""
        self._listeners.append(listener)
