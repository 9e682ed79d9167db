"""The `Ctl` test helper: run workerctl against one server and prefix, and read or seed that prefix's keys.

A module of its own (not conftest.py) so that test modules import it by a unique name.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from click.testing import CliRunner, Result
from worker_redis.keys import Keys
from worker_redis.testing import go_worker_task_fields

from workerctl import cli


@dataclass
class Ctl:
    """Runs workerctl against one server and prefix, and reads or seeds that prefix's keys directly."""

    url: str
    prefix: str
    r: Any  # redis.Redis (sync, bytes)

    @property
    def keys(self) -> Keys:
        return Keys.for_prefix(self.prefix)

    def run(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
        base = {"WORKER_REDIS_URL": self.url, "WORKER_REDIS_PREFIX": self.prefix}
        return CliRunner().invoke(cli, list(args), input=input, env={**base, **(env or {})}, catch_exceptions=False)

    def ok(self, *args: str, input: str | bytes | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, result.output
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args))

    def put(
        self,
        *,
        state: str = "ready",
        queue: str = "default",
        handler: str = "send",
        payload: bytes = b'{"a":1}',
        retries: int = 2,
        attempts: int = 0,
        task_id: str | None = None,
    ) -> str:
        """A task exactly as go-worker's enqueue (then dequeue or fail) scripts leave it."""
        tid = task_id or str(uuid.uuid4())
        k = self.keys
        now = int(time.time() * 1000)
        self.r.hset(
            k.task(tid),
            mapping=go_worker_task_fields(
                handler=handler, payload=payload, queue=queue, retries=retries, attempts=attempts, now_ms=now
            ),
        )
        self.r.sadd(k.queues, queue)
        if state == "ready":
            self.r.zadd(k.ready(queue), {tid: now})
        elif state == "processing":
            self.r.zadd(k.processing(queue), {tid: now + 30_000})
            self.r.hset(k.task(tid), mapping={"lease_at_ms": now + 30_000, "lease_token": "holder"})
        elif state == "dead":
            self.r.hset(k.task(tid), mapping={"last_error": "boom", "failed_at_ms": now})
            self.r.lpush(k.dead, tid)
        return tid

    def state(self) -> dict[bytes, Any]:
        """Every key of this prefix with its content (SCAN is fine in a test)."""
        out: dict[bytes, Any] = {}
        pattern = self.keys.prefix.replace("{", "\\{").replace("}", "\\}") + ":*"
        for key in self.r.scan_iter(match=pattern):
            kind = self.r.type(key).decode()
            if kind == "hash":
                out[key] = self.r.hgetall(key)
            elif kind == "zset":
                out[key] = self.r.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = self.r.lrange(key, 0, -1)
            elif kind == "set":
                out[key] = sorted(self.r.smembers(key))
            else:
                out[key] = self.r.get(key)
        return out

    def ready_ids(self, queue: str = "default") -> list[str]:
        return [x.decode() for x in self.r.zrange(self.keys.ready(queue), 0, -1)]

    def dead_ids(self) -> list[str]:
        return [x.decode() for x in self.r.lrange(self.keys.dead, 0, -1)]
