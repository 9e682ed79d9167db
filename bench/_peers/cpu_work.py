"""The CPU-bound work of bench/processes.py: pure Python, the same code for worker and Celery (no imports)."""

from __future__ import annotations


def burn(n: int) -> int:
    """About ``n`` loop steps of pure-Python arithmetic (bench/processes.py calibrates ``n`` to ~1 ms)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
