"""worker-sqlite: the embedded durable backend for worker-core, one SQLite file shared by one machine's processes.

>>> TaskManager(durable_backend="sqlite:///tasks.db")  # doctest: +SKIP
"""

from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._url import parse_url as parse_url
from .backend import DEFAULT_BUSY_TIMEOUT as DEFAULT_BUSY_TIMEOUT
from .backend import DEFAULT_WAKE_INTERVAL as DEFAULT_WAKE_INTERVAL
from .backend import SqliteDurableBackend as SqliteDurableBackend

__all__ = ("DEFAULT_BUSY_TIMEOUT", "DEFAULT_WAKE_INTERVAL", "SCHEMA_VERSION", "SqliteDurableBackend", "parse_url")
