"""The block finder and the shell checks themselves: what they accept and what they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from blocks import Block, blocks
from test_code_blocks import check_command, check_workerctl, commands


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_markers_languages_and_indented_fences(tmp_path: Path) -> None:
    text = (
        "Intro.\n\n<!-- needs: redis -->\n```python\nprint(1)\n```\n\n"
        "!!! note\n    <!-- skip: needs a collector -->\n    ```python\n    x = 1\n    ```\n\n"
        "```console\n$ workerctl durable stats\nready 3\n```\n"
    )
    found = blocks(page(tmp_path, text))
    assert [(b.lang, b.needs, b.skip) for b in found] == [
        ("python", "redis", None),
        ("python", None, "needs a collector"),
        ("console", None, None),
    ]
    assert found[1].code == "x = 1\n"  # the admonition's indentation is removed
    assert found[0].line == 4


def test_an_unclosed_fence_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unclosed code fence"):
        blocks(page(tmp_path, "```python\nprint(1)\n"))


def test_console_prompts_continuations_and_variables() -> None:
    block = Block(
        "p.md",
        1,
        "console",
        "$ WORKER_REDIS_URL=redis://x workerctl durable stats \\\n    --json\noutput line\n$ echo hi | grep h\n",
    )
    assert commands(block) == [["workerctl", "durable", "stats", "--json"], ["echo", "hi"], ["grep", "h"]]


def test_workerctl_lines_are_checked_against_the_click_commands() -> None:
    check_workerctl(["durable", "dlq", "replay", "--reset-attempts", "--apply"])
    check_workerctl(["worker", "app:make", "-c", "8", "--queue", "emails=3"])
    with pytest.raises(AssertionError, match="no subcommand 'replay-all'"):
        check_workerctl(["durable", "dlq", "replay-all"])
    with pytest.raises(AssertionError, match="no option '--reset'"):
        check_workerctl(["durable", "dlq", "replay", "--reset"])


def test_scripts_sessions_and_programs_must_exist() -> None:
    check_command(["uv", "run", "--no-sync", "python", "bench/otel_overhead.py"])
    check_command(["uvx", "nox", "-s", "tests-3.11(package='worker-core')"])
    with pytest.raises(AssertionError, match="does not exist"):
        check_command(["uv", "run", "examples/no_such_example.py"])
    with pytest.raises(AssertionError, match="no session"):
        check_command(["uvx", "nox", "-s", "no_such_session"])
    with pytest.raises(AssertionError, match="not on PATH"):
        check_command(["no-such-program-here", "--flag"])
