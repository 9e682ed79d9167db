"""A griffe extension for the API pages: Sphinx roles in docstrings become inline code.

The packages' docstrings use Sphinx cross-reference roles (``:class:`~worker_core.TaskManager```), which
mkdocstrings shows literally. This turns each into inline code with the name the role would display (the
last component for ``~``), so the pages read cleanly without linking to objects the site may not render.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    target = match[2].strip()
    shown = target.rsplit(".", 1)[-1] if match[1] == "~" else target
    return f"`{shown}`"


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        """Called for every object griffe builds: replace the roles in its docstring."""
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
