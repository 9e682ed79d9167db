"""A web dashboard for worker's durable stores: run it standalone or mount it in your Starlette/FastAPI app.

::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from worker_dashboard import dashboard_app

    app = Starlette(routes=[Mount("/tasks", dashboard_app("redis://localhost:6379/0", principal=my_user))])

It speaks only :class:`worker_core.admin.DurableAdmin` (plus the optional ``TaskBrowser`` and ``ScheduleAdmin``
when the backend has them) and the result store, so it works with every durable backend.
"""

from ._app import Dashboard as Dashboard
from ._app import dashboard_app as dashboard_app
from ._redact import DEFAULT_REDACT as DEFAULT_REDACT
from ._redact import REDACTED as REDACTED
from ._redact import Redactor as Redactor
from ._sampler import Sample as Sample
from ._sampler import Sampler as Sampler
from ._sampler import Snapshot as Snapshot
from ._security import AuditEntry as AuditEntry
from ._security import AuditLog as AuditLog
from ._security import Principal as Principal

__all__ = (
    "DEFAULT_REDACT",
    "REDACTED",
    "AuditEntry",
    "AuditLog",
    "Dashboard",
    "Principal",
    "Redactor",
    "Sample",
    "Sampler",
    "Snapshot",
    "dashboard_app",
)
