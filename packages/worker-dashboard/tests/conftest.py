from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dash_tasks import Job, other, work
from worker_core import DurableTaskType, TaskManager
from worker_redis.testing import RedisServer, free_port, redis_server

HERE = Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
TOKEN = "test-token-4f1c"
SCREENS = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "worker-dashboard-screens"
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh loop in another thread (the browser's sync API owns this thread's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=60)


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    name: str

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def _wait_line(popen: subprocess.Popen[bytes], want: bytes, timeout: float) -> None:
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while want not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or popen.poll() is not None:
            raise RuntimeError(f"process did not print {want!r} (exit {popen.poll()}): {buf[-2000:]!r}")
        ready, _, _ = select.select([popen.stdout], [], [], left)
        if ready:
            chunk = os.read(popen.stdout.fileno(), 4096)
            buf += chunk


@dataclass
class Stack:
    """A private redis-server prefix, a worker process, and a dashboard process (standalone entry point)."""

    url: str
    base: str
    procs: list[Proc] = field(default_factory=list)

    def start_worker(self) -> Proc:
        popen = subprocess.Popen(
            [sys.executable, str(HERE / "dash_worker.py"), self.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=HERE,
        )
        proc = Proc(popen, "worker")
        self.procs.append(proc)
        _wait_line(popen, b"ready", 30)
        return proc

    def enqueue(self, kind: DurableTaskType[Job], *jobs: Job, **options: Any) -> list[str]:
        async def go() -> list[str]:
            producer = TaskManager(durable_backend=self.url, durable_handlers=[work, other])
            try:
                ids = [await producer.register_durable_task(kind.task(job, **options)) for job in jobs]
            finally:
                await producer.stop_now()
            return [str(i) for i in ids]

        return run_async(go())

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | str]:
        return http(self.base + path, headers=headers)

    def post(self, path: str, body: str = "", *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return http(self.base + path, data=body.encode(), headers=hdrs)


def http(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body, ctype = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
    text = body.decode()
    return status, json.loads(text) if ctype.startswith("application/json") else text


def start_dashboard(stack: Stack, *args: str) -> Proc:
    port = free_port()
    popen = subprocess.Popen(
        [sys.executable, "-m", "worker_dashboard", "--url", stack.url, "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    proc = Proc(popen, "dashboard")
    stack.procs.append(proc)
    stack.base = f"http://127.0.0.1:{port}"
    _wait_line(popen, b"dashboard on", 30)
    deadline = time.monotonic() + 30
    while True:  # uvicorn binds after the line is printed: wait for /healthz to answer
        try:
            if http(stack.base + "/healthz")[0] == 200:
                return proc
        except OSError:
            pass
        if time.monotonic() > deadline or popen.poll() is not None:
            raise RuntimeError("dashboard did not answer /healthz")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
def stack(redis_srv: RedisServer) -> Iterator[Stack]:
    prefix = f"d-{uuid.uuid4().hex[:10]}"
    s = Stack(url=f"{redis_srv.url}?prefix={prefix}", base="")
    yield s
    for proc in reversed(s.procs):
        proc.stop()


@pytest.fixture
def dashboard(stack: Stack) -> Stack:
    """The stack with a dashboard that has a sign-in token, refreshing twice a second."""
    start_dashboard(stack, "--token", TOKEN, "--refresh", "0.5")
    return stack


@pytest.fixture
def playwright_driver() -> Iterator[Any]:
    # Per test: the sync API runs an event loop in this thread while started, which async tests cannot share.
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (install it with: apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright_driver: Any) -> Iterator[Callable[[], Any]]:
    """Makes headless Chromium contexts, each with a new empty profile directory."""
    made: list[tuple[Any, str]] = []

    def new() -> Any:
        profile = tempfile.mkdtemp(prefix="wd-chromium-")
        context = playwright_driver.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context.set_default_timeout(20_000)
        made.append((context, profile))
        return context

    yield new
    for context, profile in made:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screens() -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    return SCREENS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENS.exists():
        terminalreporter.write_line(f"worker-dashboard screenshots: {SCREENS}")
