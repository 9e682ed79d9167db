"""Placeholder."""

from __future__ import annotations

from typing import Any


class PostgresAdmin:
    """Placeholder."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresAdmin:
        """Placeholder."""
        return cls()
