"""worker-dashboard over an SQLite file, built from its URL: the task browser's JSON API lists and opens tasks."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import MakeBackend
from helpers import task
from starlette.applications import Starlette
from worker_dashboard import dashboard_app


async def get(app: Starlette, path: str, query: str = "") -> tuple[int, Any]:
    """One GET through the ASGI app itself (no server): the status and the JSON body."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", b"dashboard.test"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("dashboard.test", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_the_dashboard_browses_and_opens_sqlite_tasks(make_backend: MakeBackend, db_path: Path) -> None:
    backend = await make_backend()
    later = datetime.now(UTC) + timedelta(hours=1)
    mail = task(handler="send", queue="emails", payload=b'{"to": "a@b.c", "password": "hunter2"}', run_at=later)
    await backend.enqueue_many([mail, task(handler="other", run_at=later), task(handler="now")])
    app = dashboard_app(f"sqlite:///{db_path}")
    try:
        status, page = await get(app, "/api/tasks", "state=delayed&queue=emails")
        assert status == 200, page
        assert (page["supported"], [t["id"] for t in page["tasks"]]) == (True, [str(mail.id)])
        status, ready = await get(app, "/api/tasks", "state=ready")
        assert [t["handler"] for t in ready["tasks"]] == ["now"]
        status, done = await get(app, "/api/tasks", "state=completed")  # the result store, from the same URL
        assert (status, done["supported"], done["tasks"]) == (200, True, [])
        status, one = await get(app, f"/api/tasks/{mail.id}")
        assert status == 200, one
        assert one["payload_kind"] == "json"
        assert one["payload"]["to"] == "a@b.c"
        assert one["payload"]["password"] != "hunter2"  # redacted
    finally:
        await app.state.dashboard.aclose()
