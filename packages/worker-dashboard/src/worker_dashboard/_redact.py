"""Redaction of payload and metadata fields by key name, before anything reaches a page or the JSON API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

from worker_core.errors import ConfigurationError

__all__ = ("DEFAULT_REDACT", "REDACTED", "Redactor", "decode_payload")

#: Key-name patterns redacted by default (case-insensitive regular expressions, matched anywhere in the name).
DEFAULT_REDACT: Final = ("password", "secret", "token", "authorization")
#: What a redacted value is replaced with.
REDACTED: Final = "[redacted]"
_MAX_DEPTH = 32


class Redactor:
    """Replace the value of every mapping key whose name matches one of ``patterns`` (at any depth).

    Args:
        patterns: case-insensitive regular expressions searched in key names (``"passw"`` matches
            ``"db_password"``). Empty: nothing is redacted.

    Raises:
        ConfigurationError: a pattern is not a valid regular expression.
    """

    def __init__(self, patterns: Iterable[str] = DEFAULT_REDACT) -> None:
        self.patterns = tuple(patterns)
        try:
            joined = "|".join(f"(?:{p})" for p in self.patterns)
            self._re = re.compile(joined, re.IGNORECASE) if self.patterns else None
        except re.error as exc:
            raise ConfigurationError(f"invalid redaction pattern: {exc}") from None

    def hides(self, key: str) -> bool:
        """Whether the value under ``key`` is redacted."""
        return self._re is not None and self._re.search(key) is not None

    def redact(self, value: Any, _depth: int = 0) -> Any:
        """A copy of ``value`` (JSON-like data) with matching keys' values replaced by :data:`REDACTED`."""
        if _depth > _MAX_DEPTH:
            return REDACTED  # deeper than any sane payload: shown as redacted rather than walked
        if isinstance(value, dict):
            return {k: REDACTED if self.hides(str(k)) else self.redact(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v, _depth + 1) for v in value]
        return value

    def redact_mapping(self, values: dict[str, str]) -> dict[str, str]:
        """Metadata (string to string) with matching keys' values replaced."""
        return {k: REDACTED if self.hides(k) else v for k, v in values.items()}


def decode_payload(data: bytes, redactor: Redactor) -> tuple[str, Any]:
    """``(kind, shown)`` for a payload: ``("json", redacted data)``, or ``("binary", None)`` (never shown raw).

    A payload that is not JSON (a protobuf message, msgpack) is not displayed at all: without its schema no
    field can be redacted, so only its size is shown.
    """
    try:
        data_obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "binary", None
    return "json", redactor.redact(data_obj)
