"""Huey's side of ``bench/sqlite.py``: a ``SqliteHuey`` on ``$BENCH_DB`` and one no-op task."""

from __future__ import annotations

import os

from huey import SqliteHuey  # type: ignore[import-not-found, unused-ignore]
from sqlite_side import mark  # type: ignore[import-not-found, unused-ignore]  # a sibling: run as a script

huey = SqliteHuey(filename=os.environ["BENCH_DB"])
MARKS = os.environ["BENCH_MARKS"]


@huey.task()  # type: ignore[misc, untyped-decorator, unused-ignore]
def noop(i: int) -> None:
    mark(MARKS)
