"""worker-postgres: a durable PostgreSQL backend for worker-core (SKIP LOCKED leases, fencing, LISTEN/NOTIFY).

>>> backend = PostgresDurableBackend.from_url("postgresql://localhost/app?schema=worker")  # doctest: +SKIP
>>> await backend.migrate()  # once per deployment (or `python -m worker_postgres migrate URL`)  # doctest: +SKIP
>>> TaskManager(durable_backend=backend)  # or durable_backend="postgresql://localhost/app"  # doctest: +SKIP
"""

from ._connect import UrlOptions as UrlOptions
from ._connect import parse_url as parse_url
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from .admin import PostgresAdmin as PostgresAdmin
from .backend import DEFAULT_SCHEMA as DEFAULT_SCHEMA
from .backend import PostgresDurableBackend as PostgresDurableBackend

__all__ = ("DEFAULT_SCHEMA", "SCHEMA_VERSION", "PostgresAdmin", "PostgresDurableBackend", "UrlOptions", "parse_url")
