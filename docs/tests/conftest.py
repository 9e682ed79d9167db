from __future__ import annotations

from collections import Counter

import pytest
from blocks import all_blocks


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many blocks of each kind the pages hold, and every skipped one with its reason."""
    found = all_blocks()
    kinds = Counter("output (not code)" if b.lang == "text" else b.lang for b in found)
    needs = Counter(b.needs for b in found if b.needs is not None)
    skipped = [b for b in found if b.skip is not None]
    terminalreporter.section("documentation code blocks")
    terminalreporter.write_line(", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())))
    if needs:
        given = ", ".join(f"{n} {k}" for k, n in sorted(needs.items()))
        terminalreporter.write_line(f"given a private server: {given}")
    terminalreporter.write_line(f"skipped by a marker: {len(skipped)}")
    for block in skipped:
        terminalreporter.write_line(f"  {block.id}: {block.skip}")
