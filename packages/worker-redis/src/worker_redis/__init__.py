"""worker-redis: go-worker's durable Redis backend for worker-core (at-least-once, fenced leases, DLQ).

>>> backend = RedisDurableBackend.from_url("redis://localhost:6379/0")  # doctest: +SKIP
>>> TaskManager(durable_backend=backend)  # or durable_backend="redis://localhost:6379/0"  # doctest: +SKIP
"""

from ._connect import UrlOptions as UrlOptions
from ._connect import parse_url as parse_url
from .backend import WAKE_CAP as WAKE_CAP
from .backend import RedisDurableBackend as RedisDurableBackend
from .keys import DEFAULT_PREFIX as DEFAULT_PREFIX
from .keys import DEFAULT_QUEUE as DEFAULT_QUEUE
from .keys import Keys as Keys

__all__ = ("DEFAULT_PREFIX", "DEFAULT_QUEUE", "WAKE_CAP", "Keys", "RedisDurableBackend", "UrlOptions", "parse_url")
