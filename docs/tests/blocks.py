"""Find the fenced code blocks of the documentation pages, with the marker that precedes each one.

A marker is an HTML comment on the last non-blank line before the fence (invisible on the site):

- ``<!-- needs: redis -->``: the block gets a private ``redis-server`` (its URL in ``REDIS_URL``);
- ``<!-- needs: redis-cluster -->``: a private 3-master Redis Cluster (a node's URL in ``REDIS_URL``);
- ``<!-- needs: tls-files -->``: a CA, a server and a client certificate in ``$TLS_DIR``
  (``ca.pem``, ``server.pem``, ``server-key.pem``, ``client.pem``, ``client-key.pem``);
- ``<!-- needs: otlp-receiver -->``: an OTLP/HTTP receiver on loopback (``OTEL_EXPORTER_OTLP_ENDPOINT``); the
  block must have posted to it by the time it exits;
- ``<!-- skip: reason -->``: not run; counted and reported with its reason at the end of the test run.

Languages: ``python`` blocks are run; ``bash``/``console`` blocks have each command checked (see
``test_code_blocks.py``); ``ini`` blocks (a systemd unit) are parsed; ``text`` blocks are program output and
not code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>needs|skip):\s*(?P<value>.+?)\s*-->\s*$")
#: Languages whose blocks are code (each is run or checked); any other language fails the test.
CODE_LANGUAGES = frozenset({"python", "bash", "console", "ini"})
OUTPUT_LANGUAGES = frozenset({"text"})
NEEDS = frozenset({"redis", "redis-cluster", "tls-files", "otlp-receiver"})


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its marker."""

    page: str
    line: int
    lang: str
    code: str
    needs: str | None = None
    skip: str | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site (the tests folder is excluded from it)."""
    return sorted(p for p in DOCS.rglob("*.md") if "tests" not in p.relative_to(DOCS).parts)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one page, in order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(DOCS)) if path.is_relative_to(DOCS) else path.name
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, lang, start = match["indent"], match["lang"], index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        if index == len(lines):
            raise ValueError(f"{page}:{start + 1}: unclosed code fence")
        index += 1
        needs = skip = None
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous)
        if marker is not None:
            if marker["kind"] == "needs":
                needs = marker["value"]
            else:
                skip = marker["value"]
        found.append(Block(page, start + 1, lang, "\n".join(body) + "\n", needs, skip))
    return found


def all_blocks() -> list[Block]:
    """Every block of every page."""
    return [block for path in pages() for block in blocks(path)]
