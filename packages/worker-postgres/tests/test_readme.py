"""Every ```python block of the package README runs as a program against the private server (own schema)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
EXPECTED = ["cat.png -> 640px", "[b'{\"order\": 1}']", "[('send', 'TimeoutError: smtp')]\n1\n[('send', 0)] b'{}'"]


def test_readme_has_snippets() -> None:
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize(
    ("source", "expected"), list(zip(BLOCKS, EXPECTED, strict=True)), ids=[f"block{i}" for i in range(3)]
)
def test_readme_snippet_runs(source: str, expected: str, pg_url: str) -> None:
    env = {**os.environ, "POSTGRES_URL": pg_url}
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
