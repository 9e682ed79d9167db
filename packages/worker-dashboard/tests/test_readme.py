"""The README's mounting snippet runs as written: exec'd with a private redis-server's URL and served by uvicorn."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from worker_redis.testing import RedisServer, free_port

README = Path(__file__).parent.parent / "README.md"


def fetch(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_mounting_snippet_serves_the_dashboard_under_its_path(
    redis_srv: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.setitem(os.environ, "REDIS_URL", f"{redis_srv.url}?prefix=r-{uuid.uuid4().hex[:8]}")
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), namespace)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(namespace["app"], host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        started = threading.Event()
        while not started.wait(0.02):
            if server.started:
                started.set()
            assert thread.is_alive()
        base = f"http://127.0.0.1:{port}/tasks"
        assert fetch(base + "/healthz", {})[0] == 200
        assert fetch(base + "/api/overview", {}) == (401, {"error": "authentication required"})
        status, body = fetch(base + "/api/overview", {"X-Forwarded-User": "ops@example.com"})
        assert status == 200
        assert body["dead"] == 0
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()  # the host's lifespan closed the dashboard: nothing kept the server up
