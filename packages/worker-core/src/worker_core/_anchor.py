"""A weak-referenceable stand-in for a manager (this module is never compiled).

The mypyc-compiled ``TaskManager`` cannot be weakly referenced (a compiled class gets ``__weakref__`` only
through an interpreted base, and mypyc's deallocator then leaves the references dangling). Code that must
not keep a manager alive, such as worker-otel's meter callbacks, weakly references ``manager.anchor``
instead: the anchor lives exactly as long as its manager (they refer to each other and are collected
together), in both builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from .manager import TaskManager

__all__ = ("ManagerAnchor",)


@final
class ManagerAnchor:
    """Weakly reference this (``weakref.ref(tm.anchor)``, a ``WeakKeyDictionary`` key) in place of the manager.

    Attributes:
        manager: The manager it stands for (a strong reference: holding the anchor keeps the manager).
    """

    __slots__ = ("__weakref__", "manager")

    def __init__(self, manager: TaskManager) -> None:
        self.manager = manager

    def __repr__(self) -> str:
        return f"ManagerAnchor({self.manager!r})"
