"""CPU-bound tasks through ``workerctl worker --processes 1`` and ``--processes 2``, and Celery prefork with 2.

Each task runs ``_peers/cpu_work.burn`` (pure-Python arithmetic, calibrated here to about 1 ms) and increments a
counter in Redis. Per side: a private redis-server, ``BENCH_N`` tasks (default 6,000) enqueued first, then the
worker started; throughput is measured in the steady state, from the 10th to the 90th percentile of completions
(so interpreter start-up, imports and the last stragglers do not count), over ``BENCH_ROUNDS`` rounds (default 2),
the best of each. A fourth side runs one node whose plain handlers go to worker-core's process pool
(``--plain-runner process``, one pool process per CPU). Celery (its own virtualenv under ``bench/.envs/celery``,
built with ``uv``) runs the same function with ``-P prefork -c 2``, prefetch multiplier 4, results ignored, on the
same kind of private server.

Run: ``uv run --no-sync python bench/processes.py`` (or ``uvx nox -s bench -- bench/processes.py``).
``BENCH_LIBS=worker`` skips Celery. The load average is printed with the figures: the machine is shared. Each
round first measures the machine's own ceiling: two processes running ``burn`` side by side (no worker, no
Redis) over one process alone; a ratio of the workers near that ceiling is all the cores allow at that moment.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/redis.py would shadow redis-py: keep this directory off sys.path (as bench/redis.py does).
HERE = Path(__file__).resolve().parent
PEERS = HERE / "_peers"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(PEERS))

import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from cpu_work import burn  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from worker_redis.testing import redis_server  # noqa: E402

N = int(os.environ.get("BENCH_N", "6000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))  # -c of each workerctl node
LIBS = os.environ.get("BENCH_LIBS", "worker,celery").split(",")
CELERY = ["celery[redis]==5.7.0"]
PREFIX = "bench"


def calibrate(target_s: float = 0.001) -> int:
    """Loop steps of :func:`burn` that take about ``target_s`` on an idle core (the fastest of 7 tries)."""
    n = 200_000
    fastest = min(_timed(n) for _ in range(7))
    return max(1, int(target_s * n / fastest))


def _timed(n: int) -> float:
    start = time.perf_counter()
    burn(n)
    return time.perf_counter() - start


def seed(url: str, count: int, steps: int) -> None:
    import redis
    from worker_redis.keys import Keys
    from worker_redis.testing import go_worker_task_fields

    r = redis.Redis.from_url(url)
    keys = Keys.for_prefix(PREFIX)
    now = int(time.time() * 1000)
    pipe: Any = r.pipeline(transaction=False)
    pipe.sadd(keys.queues, "default")
    payload = json.dumps({"n": steps}).encode()
    for i in range(count):
        tid = f"00000000-0000-4000-8000-{i:012d}"
        fields = go_worker_task_fields(
            handler="work", payload=payload, queue="default", retries=0, attempts=0, now_ms=now
        )
        pipe.hset(keys.task(tid), mapping=fields)
        pipe.zadd(keys.ready("default"), {tid: now})
    pipe.execute()
    r.close()


def steady_rate(url: str, count: int, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> float:
    """Tasks/s between the 10th and the 90th percentile of completions (``bench:done`` in Redis)."""
    import redis

    r = redis.Redis.from_url(url)
    low, high = int(count * 0.1), int(count * 0.9)
    t_low = t_high = None
    deadline = time.monotonic() + timeout
    try:
        while t_high is None:
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited early ({proc.returncode})")
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            done = int(r.get("bench:done") or 0)
            now = time.perf_counter()
            if t_low is None and done >= low:
                t_low = now
            if done >= high:
                t_high = now
            time.sleep(0.005)
    finally:
        r.close()
    assert t_low is not None
    return (high - low) / (t_high - t_low)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def children_cpu() -> float:
    """CPU seconds (user + system) of every child process waited for so far, their own children included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


#: CPU ms per task of the worker processes (the whole run: start-up included), by side; the last run's.
CPU_MS: dict[str, float] = {}


def run_worker(processes: int, steps: int, *extra: str) -> tuple[float, float]:
    with redis_server() as server:
        seed(server.url, N, steps)
        before = children_cpu()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WORKER_")},
            "BENCH_REDIS_URL": server.url,
            "PYTHONPATH": str(PEERS),
        }
        cmd = [sys.executable, "-m", "workerctl", "worker", "worker_cpu_app:create_manager",
               "--redis-url", server.url, "--redis-prefix", PREFIX, "-c", str(CONCURRENCY),
               "--processes", str(processes), "--log-level", "warning", *extra]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, cwd=PEERS)
        try:
            rate = steady_rate(server.url, N, proc)
            wait_all_done(server.url, N, proc)
        finally:
            stop(proc)
        return rate, (children_cpu() - before) * 1000 / N


def celery_python() -> str:
    env = HERE / ".envs" / "celery"
    python = env / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            raise SystemExit("uv is needed to build Celery's virtualenv")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([uv, "venv", "-q", "-p", version, str(env)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *CELERY], check=True)
    return str(python)


def run_celery(processes: int, steps: int) -> tuple[float, float]:
    python = celery_python()
    with redis_server() as server:
        env = {**os.environ, "BENCH_REDIS_URL": server.url, "PYTHONPATH": str(PEERS)}
        subprocess.run([python, str(PEERS / "celery_cpu_app.py"), str(N), str(steps)], env=env, check=True)
        before = children_cpu()
        cmd = [python, "-m", "celery", "-A", "celery_cpu_app", "worker", "-P", "prefork", "-c", str(processes),
               "--prefetch-multiplier", "4", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-l", "warning"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, cwd=PEERS)
        try:
            rate = steady_rate(server.url, N, proc)
            wait_all_done(server.url, N, proc)
        finally:
            stop(proc)
        return rate, (children_cpu() - before) * 1000 / N


def _burn_loop(steps: int, count: int) -> None:
    for _ in range(count):
        burn(steps)


def machine_ceiling(steps: int, count: int = 2000) -> float:
    """Burns/s of two processes burning side by side over one process alone: what 2 cores give right now."""
    import multiprocessing

    rates = []
    for procs in (1, 2):
        workers = [multiprocessing.Process(target=_burn_loop, args=(steps, count)) for _ in range(procs)]
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rates.append(procs * count / (time.perf_counter() - started))
    return rates[1] / rates[0]


def wait_all_done(url: str, count: int, proc: subprocess.Popen[bytes]) -> None:
    import redis

    r = redis.Redis.from_url(url)
    try:
        while int(r.get("bench:done") or 0) < count and proc.poll() is None:
            time.sleep(0.01)
    finally:
        r.close()


def main() -> None:
    steps = calibrate()
    one_ms = min(_timed(steps) for _ in range(7)) * 1000
    print(f"burn({steps}) takes {one_ms:.2f} ms here (fastest of 7); {N} tasks per run, best of {ROUNDS} rounds")
    sides: list[tuple[str, Callable[[], tuple[float, float]]]] = [
        ("workerctl --processes 1", lambda: run_worker(1, steps)),
        ("workerctl --processes 2", lambda: run_worker(2, steps)),
        ("workerctl --processes 1 --plain-runner process", lambda: run_worker(1, steps, "--plain-runner", "process")),
    ]
    if "celery" in LIBS:
        sides.append(("Celery prefork -c 2", lambda: run_celery(2, steps)))
    best: dict[str, float] = {}
    loads: list[float] = []
    ceilings: list[float] = []
    for _ in range(ROUNDS):
        ceilings.append(machine_ceiling(steps))
        print(f"  machine: 2 processes burning / 1: {ceilings[-1]:.2f}", flush=True)
        for name, fn in sides:
            loads.append(os.getloadavg()[0])
            rate, cpu_ms = fn()
            best[name] = max(best.get(name, 0.0), rate)
            CPU_MS[name] = min(CPU_MS.get(name, 1e9), cpu_ms)
            print(f"  {name}: {rate:,.0f} tasks/s, {cpu_ms:.2f} CPU ms/task (load average {loads[-1]:.2f})", flush=True)
    print()
    print("| side | tasks/s (best) | CPU ms per task (lowest; start-up included) |")
    print("|---|---|---|")
    for name, rate in best.items():
        print(f"| {name} | {rate:,.0f} | {CPU_MS[name]:.2f} |")
    one, two = best["workerctl --processes 1"], best["workerctl --processes 2"]
    print(f"| **ratio --processes 2 / --processes 1** | **{two / one:.2f}** (target >= 1.7) |")
    print(f"| machine ceiling: 2 burn loops / 1 (per round) | {' / '.join(f'{c:.2f}' for c in ceilings)} |")
    if "Celery prefork -c 2" in best:
        print(f"| ratio --processes 2 / Celery prefork -c 2 | {two / best['Celery prefork -c 2']:.2f} |")
    print(f"\nload average (1 min) during the runs: {min(loads):.2f} - {max(loads):.2f}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
