"""Name -> factory registries that plugins fill through the registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigurationError, PluginError

__all__ = ("Registry",)

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name (a URL scheme, a codec name, ...) to a factory; a duplicate name is a :class:`PluginError`.

    Plugins call :meth:`add` from their ``worker_register_*`` hook; the manager calls :meth:`get`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        #: Appended to the error of a lookup that finds nothing (e.g. which plugins failed to load).
        self.hint = ""
        self._items: dict[str, Callable[..., T]] = {}
        self._owners: dict[str, str] = {}

    def add(self, name: str, factory: Callable[..., T], *, owner: str = "") -> None:
        """Register ``factory`` under ``name`` (case-insensitive)."""
        key = name.strip().lower()
        if not key:
            raise PluginError(f"{self.kind} name must not be empty")
        if key in self._items:
            first = self._owners.get(key) or "another plugin"
            raise PluginError(f"{self.kind} {key!r} is registered twice (first by {first})")
        self._items[key] = factory
        self._owners[key] = owner

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory for ``name``; a :class:`ConfigurationError` naming the known ones otherwise."""
        key = name.strip().lower()
        try:
            return self._items[key]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            hint = f" ({self.hint})" if self.hint else ""
            raise ConfigurationError(f"unknown {self.kind} {name!r}; installed: {known}{hint}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
