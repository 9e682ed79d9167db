"""The dashboard mounted in a host Starlette app behind the host's own authentication (``principal=``).

Served by uvicorn in a thread; the store is a real redis-server. The admins here are RedisAdmin or subclasses: one
hides ScheduleAdmin, one hides TaskBrowser (backends without them); the schedules page reads what a backend published.
"""

from __future__ import annotations

import contextlib
import http.cookies
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import uvicorn
from conftest import run_async
from starlette.applications import Starlette
from starlette.routing import Mount
from worker_core.admin import ScheduleAdmin, TaskBrowser
from worker_core.durable.types import DurableTask
from worker_core.schedules import ScheduleRecord
from worker_redis import RedisDurableBackend
from worker_redis.admin import RedisAdmin
from worker_redis.testing import RedisServer, free_port

from worker_dashboard import dashboard_app

T = TypeVar("T")


class NoSchedulesAdmin(RedisAdmin):
    """A backend without ScheduleAdmin: None blocks the protocol members."""

    schedules = None  # type: ignore[assignment]
    pause_schedule = None  # type: ignore[assignment]
    resume_schedule = None  # type: ignore[assignment]
    run_schedule_now = None  # type: ignore[assignment]
    schedule_events = None  # type: ignore[assignment]


class PlainAdmin(RedisAdmin):
    """A backend with DurableAdmin only (no TaskBrowser): None blocks the protocol members."""

    browse_tasks = None  # type: ignore[assignment]
    task_payload = None  # type: ignore[assignment]


@dataclass
class Host:
    base: str
    admin: RedisAdmin
    cookies: dict[str, str]
    url: str

    def call(
        self, path: str, *, user: str | None = "alice", body: dict[str, str] | None = None, csrf: bool = True
    ) -> tuple[int, Any, str]:
        headers = {"Accept": "application/json"}
        if user:
            headers["X-User"] = user
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            if csrf and "wd_csrf" in self.cookies:
                headers["X-CSRF-Token"] = self.cookies["wd_csrf"]
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, ctype = response.status, response.read(), response.headers.get("content-type", "")
                self._keep(response.headers.get_all("set-cookie") or [])
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        text = raw.decode()
        return status, json.loads(text) if ctype.startswith("application/json") else text, ctype

    def page(self, path: str, user: str = "alice") -> str:
        request = urllib.request.Request(self.base + path, headers={"X-User": user})
        with urllib.request.urlopen(request, timeout=10) as response:
            self._keep(response.headers.get_all("set-cookie") or [])
            return str(response.read().decode())

    def _keep(self, headers: list[str]) -> None:
        for header in headers:
            jar = http.cookies.SimpleCookie(header)
            self.cookies.update({k: m.value for k, m in jar.items()})


async def whoami(scope: dict[str, Any]) -> str | None:
    """The host's authentication: here, a header its proxy would set (async, as a session lookup would be)."""
    value = dict(scope["headers"]).get(b"x-user", b"").decode()
    if value == "crash":
        raise RuntimeError("the host's session store is down")
    return value or None


@pytest.fixture
def serve(redis_srv: RedisServer) -> Iterator[Callable[..., Host]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(admin_cls: type[RedisAdmin] = RedisAdmin, **options: Any) -> Host:
        url = f"{redis_srv.url}?prefix=m-{uuid.uuid4().hex[:8]}"
        admin = admin_cls.from_url(url)
        results = RedisDurableBackend.from_url(url)
        inner = dashboard_app(admin=admin, results=results, principal=whoami, refresh=0.5, **options)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            yield
            await inner.state.dashboard.aclose()  # a mounted app's own lifespan never runs: the host's closes it
            await admin.aclose()
            await results.aclose()

        app = Starlette(routes=[Mount("/tasks", inner)], lifespan=lifespan)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        host = Host(f"http://127.0.0.1:{port}/tasks", admin, {}, url)
        ready = threading.Event()
        while not ready.wait(0.02):  # uvicorn flips `started` once it listens
            if server.started:
                ready.set()
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
        return host

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def enqueue_raw(url: str, payload: bytes, handler: str = "h", queue: str = "default") -> str:
    async def go() -> str:
        async with RedisDurableBackend.from_url(url) as backend:
            task = DurableTask(handler, payload=payload, id=uuid.uuid4(), queue=queue)
            await backend.enqueue(task)
            return str(task.id)

    return run_async(go())


def test_host_principal_gates_reads_and_actions_and_links_stay_under_the_mount(serve: Callable[..., Host]) -> None:
    host = serve()
    assert host.call("/api/overview", user=None)[0] == 401
    status, body, _ = host.call("/api/overview")
    assert status == 200
    assert body["dead"] == 0
    html = host.page("/")
    assert 'href="/tasks/queues"' in html
    assert 'sse-connect="/tasks/events?topics=overview,dead"' in html
    assert 'src="/tasks/static/htmx.min.js"' in html
    request = urllib.request.Request(host.base + "/queues", headers={"X-User": "alice"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    status, body, _ = host.call("/healthz", user=None)
    assert (status, body["ok"]) == (200, True)
    assert host.call("/api/overview", user="crash")[0] == 401  # the host's code raised: denied, logged


def as_node(host: Host, call: Callable[[RedisDurableBackend], Awaitable[T]]) -> T:
    """Run ``call`` with a backend of the host's store (a node), in a loop of its own."""

    async def go() -> T:
        node = RedisDurableBackend.from_url(host.url)
        try:
            return await call(node)
        finally:
            await node.aclose()

    return run_async(go())


def test_schedules_page_lists_pauses_and_runs_now_with_audit(serve: Callable[..., Host]) -> None:
    host = serve()
    assert isinstance(host.admin, ScheduleAdmin)
    record = ScheduleRecord("nightly", "0 3 * * *", "UTC", "default")
    as_node(host, lambda node: node.publish_schedules([record]))  # what a node does when it starts
    html = host.page("/schedules")  # also sets the CSRF cookie
    assert "nightly" in html
    assert "0 3 * * *" in html
    assert "never" in html
    status, body, _ = host.call("/api/schedules/nightly/run", body={})
    assert (status, body["task_id"]) == (200, "")  # a request: the node that takes it enqueues the task
    assert as_node(host, lambda node: node.take_schedule_runs(["nightly"])) == ["nightly"]
    assert host.call("/api/schedules/nightly/pause", body={})[0] == 200
    listed = host.call("/api/schedules")[1]["schedules"]
    assert [(s["name"], s["paused"], s["next_run"]) for s in listed] == [("nightly", True, "")]
    assert as_node(host, lambda node: node.schedule_states(["nightly"]))["nightly"].paused  # what every node reads
    assert host.call("/api/schedules/nope/pause", body={})[0] == 400
    assert host.call("/api/schedules/nightly/resume", body={}, csrf=False)[0] == 403  # no CSRF token: refused
    assert host.call("/api/schedules/nightly/resume", body={}, user=None)[0] == 401
    audit = host.call("/api/audit")[1]["entries"]
    assert [(e["principal"], e["action"], e["target"], e["ok"]) for e in audit[:3]] == [
        ("alice", "refused", "/tasks/api/schedules/nightly/resume", False),
        ("alice", "pause", "schedule nightly", True),
        ("alice", "run", "schedule nightly", True),
    ]


def test_schedules_page_says_when_the_backend_has_none(serve: Callable[..., Host]) -> None:
    host = serve(NoSchedulesAdmin)
    assert "no schedules support in this backend" in host.page("/schedules")
    host.page("/")
    assert host.call("/api/schedules")[1] == {
        "supported": False,
        "error": "no schedules support in this backend",
        "schedules": [],
    }
    assert host.call("/api/schedules/x/run", body={})[0] == 400


def test_redaction_rule_is_configurable_and_applies_to_payload_and_metadata(serve: Callable[..., Host]) -> None:
    host = serve(redact=["card", "^pin$"])
    payload = {"card_number": "4111", "nested": [{"pin": "1234", "spin": "ok"}], "password": "shown"}
    task_id = enqueue_raw(host.url, json.dumps(payload).encode())
    body = host.call(f"/api/tasks/{task_id}")[1]
    assert body["payload_kind"] == "json"
    assert body["payload"] == {
        "card_number": "[redacted]",
        "nested": [{"pin": "[redacted]", "spin": "ok"}],
        "password": "shown",
    }
    binary = enqueue_raw(host.url, b"\x08\x96\x01")  # a protobuf message: never shown
    body = host.call(f"/api/tasks/{binary}")[1]
    assert (body["payload_kind"], body["payload"]) == ("binary", None)
    assert host.call("/api/tasks/does-not-exist")[0] == 404


def test_a_backend_without_task_browser_degrades(serve: Callable[..., Host]) -> None:
    host = serve(PlainAdmin)
    admin: object = host.admin
    assert not isinstance(admin, TaskBrowser)
    task_id = enqueue_raw(host.url, b"{}")
    body = host.call("/api/tasks?state=ready")[1]
    assert body["supported"] is False
    assert "cannot list tasks by state" in body["error"]
    assert "cannot list tasks by state" in host.page("/tasks")
    detail = host.call(f"/api/tasks/{task_id}")[1]
    assert (detail["task"]["status"], detail["payload_kind"]) == ("ready", "unavailable")
    assert host.call("/api/dlq")[1]["total"] == 0


def test_bulk_replay_needs_the_confirmed_count(serve: Callable[..., Host]) -> None:
    host = serve()

    async def dead_letter(n: int) -> None:
        async with RedisDurableBackend.from_url(host.url) as backend:
            for _ in range(n):
                await backend.enqueue(DurableTask("h", payload=b"{}", id=uuid.uuid4()))
            for lease in await backend.dequeue(n, 30.0):
                await backend.fail(lease, "boom")

    run_async(dead_letter(3))
    host.page("/dlq")
    status, body, _ = host.call("/api/dlq/replay", body={"handler": "h"})
    assert (status, body["confirm"], body["changed"]) == (409, 3, False)
    status, body, _ = host.call("/api/dlq/replay", body={"handler": "h", "expected": "2"})
    assert (status, body["confirm"], body["changed"]) == (409, 3, True)  # the count is not what was confirmed
    assert host.call("/api/dlq")[1]["total"] == 3
    status, body, _ = host.call("/api/dlq/replay", body={"handler": "h", "expected": "3"})
    assert (status, body["count"]) == (200, 3)
    assert host.call("/api/dlq")[1]["total"] == 0
    assert host.call("/api/overview")[1]["total_ready"] == 3


def test_store_down_is_a_503_not_a_crash(serve: Callable[..., Host]) -> None:
    host = serve()

    async def close() -> None:
        await host.admin.client.connection_pool.disconnect()

    host.admin.client.connection_pool.connection_kwargs["port"] = free_port()  # nothing listens there
    run_async(close())
    status, body, _ = host.call("/api/overview")
    assert status == 503
    assert "BackendUnavailableError" in body["error"]
    assert host.call("/healthz", user=None)[0] == 503


def test_bad_input_is_a_clear_error_and_changes_nothing(serve: Callable[..., Host]) -> None:
    host = serve()
    task_id = enqueue_raw(host.url, b"{}")
    host.page("/")
    status, body, _ = host.call("/api/queues/nope/pause", body={})
    assert (status, body["error"]) == (400, "unknown queue 'nope'")
    status, body, _ = host.call(f"/api/dlq/{task_id}/replay", body={})  # ready, not dead: not moved
    assert status == 404
    assert "not in the DLQ" in body["error"]
    assert host.call(f"/api/tasks/{task_id}")[1]["task"]["status"] == "ready"
    assert host.call("/api/tasks?state=bogus")[0] == 400
    assert host.call("/api/tasks?limit=x")[0] == 400
    status, body, _ = host.call("/api/pause", body={"pad": "x" * 70_000})
    assert (status, body["error"]) == (400, "request body too large")
    assert host.call("/api/queues")[1]["paused"] is False
    audit = host.call("/api/audit")[1]["entries"]
    assert [(e["action"], e["ok"], e["detail"]) for e in audit] == [("replay", False, "not in the DLQ")]
