"""Helpers shared by the worker-sqlite tests: polling, and worker processes started with subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from worker_core.durable.types import DurableTask

T = TypeVar("T")
WORKER = Path(__file__).with_name("fault_worker.py")


def task(handler: str = "work", payload: bytes | None = b"1", **fields: Any) -> DurableTask:
    fields.setdefault("id", uuid.uuid4())
    return DurableTask(handler, payload=payload, **fields)


async def until(probe: Callable[[], Any], timeout: float = 20.0, every: float = 0.02) -> Any:  # noqa: ASYNC109
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(every)


def rows(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run a read query on the file with a connection of its own."""
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


@dataclass
class Worker:
    log: Path
    process: subprocess.Popen[bytes]
    killed_at: float | None = None


@dataclass
class Fleet:
    """Worker processes on one database file, each a TaskManager (``fault_worker.py``)."""

    path: Path
    folder: Path
    lease: float = 1.0
    work_ms: int = 20
    concurrency: int = 8
    workers: list[Worker] = field(default_factory=list)

    def spawn(self) -> Worker:
        log = self.folder / f"worker-{len(self.workers)}.log"
        argv = [str(WORKER), str(self.path), str(log), str(self.lease), str(self.work_ms), str(self.concurrency)]
        with log.with_suffix(".err").open("wb") as err:  # the worker's warnings, for whoever debugs a failure
            process = subprocess.Popen(
                [sys.executable, *argv],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "WORKER_PLUGINS_AUTOLOAD": "0"},
            )
        worker = Worker(log, process)
        self.workers.append(worker)
        return worker

    def lines(self, worker: Worker) -> list[list[str]]:
        if not worker.log.exists():
            return []
        return [line.split() for line in worker.log.read_text().splitlines() if line.strip()]

    def count(self, worker: Worker, kind: str) -> int:
        return sum(1 for parts in self.lines(worker) if parts[0] == kind)

    def ready(self, worker: Worker) -> bool:
        return self.count(worker, "READY") > 0

    def kill(self, worker: Worker) -> None:
        worker.killed_at = time.time()
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def completed(self) -> set[str]:
        return {parts[1] for w in self.workers for parts in self.lines(w) if parts[0] == "D"}

    def all_lines(self, kind: str) -> list[tuple[list[str], Worker]]:
        return [(parts, w) for w in self.workers for parts in self.lines(w) if parts[0] == kind]

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                with_signal(worker.process, signal.SIGCONT)
                worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)


def with_signal(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
