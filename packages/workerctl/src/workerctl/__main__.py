"""``python -m workerctl`` and the ``workerctl`` console script."""

from __future__ import annotations

from ._app import main

__all__ = ("main",)

if __name__ == "__main__":
    main()
