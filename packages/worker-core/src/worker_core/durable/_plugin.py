"""The built-in plugin: the ``memory`` backend scheme and the ``protobuf``, ``json`` and ``msgpack`` codecs.

``memory://`` gives a fresh :class:`~worker_core.testing.InMemoryDurableBackend`. Options ride as query
parameters: ``memory://?default_queue=jobs&weights=critical:3,bulk:1&dead_ttl=86400``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from worker_core.errors import ConfigurationError
from worker_core.hookspecs import hookimpl
from worker_core.testing.memory import InMemoryDurableBackend

from .codecs import builtin_codecs
from .types import DEFAULT_DEAD_TTL, dead_ttl_from_text

if TYPE_CHECKING:
    from worker_core.registry import Registry

__all__ = ("memory_backend_from_url", "worker_register_backends", "worker_register_codecs")

_OPTIONS = ("default_queue", "weights", "dead_ttl")


def memory_backend_from_url(url: str) -> InMemoryDurableBackend:
    """Build an in-memory backend from ``memory://[?default_queue=NAME][&weights=q:N,...][&dead_ttl=SECONDS]``.

    Raises:
        ConfigurationError: another scheme, a host or path, an unknown option, a malformed weight or dead_ttl.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "memory":
        raise ConfigurationError(f"not a memory:// URL: {url!r}")
    if parts.netloc or parts.path not in ("", "/"):
        raise ConfigurationError(f"memory:// takes no host or path (each URL is a new, private backend): {url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise ConfigurationError(f"unknown memory:// option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    default_queue = query.get("default_queue", ["default"])[-1]
    weights: dict[str, int] = {}
    for raw in query.get("weights", []):
        for item in filter(None, (part.strip() for part in raw.split(","))):
            name, sep, value = item.partition(":")
            try:
                weights[name.strip()] = int(value) if sep else -1
            except ValueError:
                weights[name.strip()] = -1
            if weights[name.strip()] < 1 or not name.strip():
                raise ConfigurationError(f"memory:// weights: expected queue:weight with weight >= 1, got {item!r}")
    dead_ttl = dead_ttl_from_text(query["dead_ttl"][-1]) if "dead_ttl" in query else DEFAULT_DEAD_TTL
    return InMemoryDurableBackend(default_queue=default_queue, queue_weights=weights, dead_ttl=dead_ttl)


@hookimpl
def worker_register_backends(registry: Registry[Any]) -> None:
    """Register the ``memory`` scheme."""
    registry.add("memory", memory_backend_from_url, owner="worker-core")


@hookimpl
def worker_register_codecs(registry: Registry[Any]) -> None:
    """Register the ``protobuf``, ``json`` and ``msgpack`` codecs."""
    for name, factory in builtin_codecs().items():
        registry.add(name, factory, owner="worker-core")
