"""What 1,000 registered schedules cost a node that is otherwise idle: CPU time of the process over a wall interval.

Run: ``uv run --no-sync python bench/schedules.py`` (``BENCH_SECONDS=30`` measures longer, ``BENCH_SCHEDULES``
changes the count). Three configurations, one after the other, each in a fresh manager:

- ``in process``: 1,000 ``register_cron_task`` schedules, daily crons at spread minutes and hours and hourly
  intervals, none due during the measurement (the loop sleeps until the earliest tick, at most a second);
- ``durable, memory``: the same as ``register_durable_cron_task`` on the in-memory backend (the loop also polls the
  backend for run requests once a second, a call that takes the 1,000 names);
- ``no schedules``: the same durable manager with none, for the baseline (its lease loop polls the backend too);
- ``durable, redis`` and its baseline: the same on a private redis-server (``worker_redis.testing``), the node's
  once-a-second run-request poll sending the 1,000 names to the script (skipped without ``redis-server``).

Each measures ``time.process_time()`` (user + system CPU of the whole process, every thread) over ``BENCH_SECONDS``
of wall time after a one-second settle, and prints it as a percentage of one core. Registration time is reported
too. Nothing is asserted: the target (< 1% of one core) is checked by reading the figure (bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from typing import Any

# bench/redis.py and bench/grpc.py would shadow the redis and grpc packages: drop this folder from the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from worker_core import Task, TaskContext, TaskManager  # noqa: E402
from worker_core.durable import DurableHandlerSpec, DurableTask, MsgspecJsonCodec  # noqa: E402
from worker_core.testing import InMemoryDurableBackend  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
COUNT = int(os.environ.get("BENCH_SCHEDULES", "1000"))


def _job(ctx: TaskContext) -> None:
    return None


def _spec(i: int) -> str | timedelta:
    """Daily crons at spread times, and hourly intervals: nothing due within a short measurement (mostly)."""
    if i % 2:
        return timedelta(hours=1 + i % 5)
    return f"{i % 60} {i % 24} * * *"


def _handler(ctx: TaskContext, payload: Any) -> None:
    return None


def _local_factory() -> Task[None]:
    return Task(_job)


def _durable_factory() -> DurableTask:
    return DurableTask("tick", {"n": 1})


async def _measure(tm: TaskManager, register: Any, count: int) -> tuple[float, float]:
    began = time.perf_counter()
    for i in range(count):
        register(f"schedule-{i}", _spec(i))
    registration_s = time.perf_counter() - began
    async with tm:
        await asyncio.sleep(1.0)  # settle: the start, the first poll and publish
        cpu = time.process_time()
        wall = time.perf_counter()
        await asyncio.sleep(SECONDS)
        used = (time.process_time() - cpu) / (time.perf_counter() - wall)
    return used * 100, registration_s / max(count, 1) * 1e6


def _durable_manager() -> TaskManager:
    handlers: dict[str, DurableHandlerSpec[Any]] = {"tick": DurableHandlerSpec(None, _handler)}
    codec = MsgspecJsonCodec()
    return TaskManager(durable_backend=InMemoryDurableBackend(), durable_handlers=handlers, durable_codec=codec)


def _redis_manager(url: str) -> TaskManager:
    from worker_redis import RedisDurableBackend

    handlers: dict[str, DurableHandlerSpec[Any]] = {"tick": DurableHandlerSpec(None, _handler)}
    backend = RedisDurableBackend.from_url(url, prefix="bench-schedules")
    return TaskManager(durable_backend=backend, durable_handlers=handlers, durable_codec=MsgspecJsonCodec())


async def _redis_figures() -> tuple[float, float] | None:
    import shutil

    if shutil.which("redis-server") is None:
        return None
    from worker_redis.testing import redis_server

    with redis_server() as srv:
        node = _redis_manager(srv.url)
        cpu, _ = await _measure(
            node, lambda name, spec: node.register_durable_cron_task(name, spec, _durable_factory), COUNT
        )
        await node.durable_backend().aclose()  # type: ignore[attr-defined]
        bare = _redis_manager(srv.url)
        cpu_bare, _ = await _measure(bare, None, 0)
        await bare.durable_backend().aclose()  # type: ignore[attr-defined]
    return cpu, cpu_bare


async def main() -> None:
    local = TaskManager()
    cpu_local, reg_local = await _measure(
        local, lambda name, spec: local.register_cron_task(name, spec, _local_factory), COUNT
    )
    durable = _durable_manager()
    cpu_durable, reg_durable = await _measure(
        durable, lambda name, spec: durable.register_durable_cron_task(name, spec, _durable_factory), COUNT
    )
    bare = _durable_manager()
    cpu_bare, _ = await _measure(bare, None, 0)
    print(f"schedules: {COUNT}, measured over {SECONDS:.0f} s of wall time each")
    print(f"  in process        {cpu_local:6.3f} % of one core   (register: {reg_local:5.1f} us each)")
    print(f"  durable, memory   {cpu_durable:6.3f} % of one core   (register: {reg_durable:5.1f} us each)")
    print(f"  no schedules      {cpu_bare:6.3f} % of one core   (durable manager, baseline)")
    redis = await _redis_figures()
    if redis is not None:
        print(f"  durable, redis    {redis[0]:6.3f} % of one core   (this process; redis-server not counted)")
        print(f"  no schedules      {redis[1]:6.3f} % of one core   (durable manager on redis, baseline)")


if __name__ == "__main__":
    asyncio.run(main())
