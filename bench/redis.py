"""worker-redis against arq, SAQ and taskiq (taskiq-redis's stream broker) on one private redis-server.

Each peer runs in its own virtualenv under ``bench/.envs`` (created here with ``uv``: the peers pin redis-py
versions that conflict with ours), one worker process with concurrency 16. Figures per library:

* enqueue throughput of 10,000 no-op tasks, one call per task (and batched where the library can);
* end to end: a worker running, 10,000 tasks enqueued (100 calls in flight, or batches of 100), first enqueue
  to last completion, plus the Redis commands the whole flow spent per task;
* pickup latency, enqueue to the handler's first line, p50 and p99, for 1,000 tasks at 200/s to an idle worker;
* ``redis-benchmark`` on the same server as the ceiling;
* worker-redis's result store (``_peers/results.py``): end-to-end throughput with outcomes stored against the same
  run with ``durable_result_ttl=None``, and a producer's ``await handle.result()`` p50/p99 after the worker (another
  process) acked. ``BENCH_RESULTS=0`` skips it.

Run: ``uv run --no-sync python bench/redis.py`` (or ``nox -s bench -- bench/redis.py``). ``BENCH_N`` and
``BENCH_TRICKLE`` shrink the sizes, ``BENCH_LIBS=worker,arq`` picks libraries, ``BENCH_ROUNDS`` repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named redis.py: keep its directory off sys.path, or `import redis` would import it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from importlib import metadata  # noqa: E402
from typing import Any  # noqa: E402

from worker_redis.testing import redis_server  # noqa: E402

ENVS = _HERE / ".envs"
PEERS_DIR = _HERE / "_peers"
PEERS: dict[str, list[str]] = {
    "arq": ["arq==0.28.0", "hiredis"],
    "saq": ["saq[hiredis]==0.26.4", "typing_extensions"],
    "taskiq": ["taskiq==0.13.0", "taskiq-redis==1.2.4", "hiredis"],
}
VERSIONS: dict[str, list[str]] = {"arq": ["arq"], "saq": ["saq"], "taskiq": ["taskiq", "taskiq-redis"]}


def peer_python(lib: str) -> str:
    """The interpreter of ``lib``'s virtualenv, created on first use."""
    if lib == "worker":
        return sys.executable
    env = ENVS / lib
    python = env / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            raise SystemExit("uv is needed to build the peers' virtualenvs")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([uv, "venv", "-q", "-p", version, str(env)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *PEERS[lib]], check=True)
    return str(python)


def versions(lib: str) -> str:
    names = ["worker-redis", "redis", "hiredis"] if lib == "worker" else [*VERSIONS[lib], "redis", "hiredis"]
    if lib == "worker":
        return ", ".join(f"{n} {metadata.version(n)}" for n in names)
    code = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    return subprocess.run(
        [peer_python(lib), "-c", code, *names], capture_output=True, text=True, check=True
    ).stdout.strip()


def redis_benchmark(port: int) -> dict[str, float]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {}
    figures: dict[str, float] = {}
    for pipeline in ("1", "16"):
        out = subprocess.run(
            [exe, "-p", str(port), "-q", "-n", "200000", "-c", "16", "-P", pipeline, "-t", "set,get,lpush", "--csv"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in out.splitlines()[1:]:
            cells = [c.strip('"') for c in line.split(",")]
            figures[f"{cells[0]} P={pipeline}"] = float(cells[1])
    return figures


def run_lib(lib: str, url: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(PEERS_DIR), "WORKER_PLUGINS_AUTOLOAD": "1"}
    out = subprocess.run(
        [peer_python(lib), str(PEERS_DIR / "peers.py"), lib, "drive", url],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise SystemExit(f"{lib} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _trips(result: dict[str, Any]) -> str:
    runs = [result["e2e"], result["e2e_one"], *([result["e2e_batched"]] if "e2e_batched" in result else [])]
    values = [r["round_trips_per_task"] for r in runs if r.get("round_trips_per_task", -1) >= 0]
    return " / ".join(f"{v:.2f}" for v in values) or "not measured"


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    libs = os.environ.get("BENCH_LIBS", "worker,arq,saq,taskiq").split(",")
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    for lib in libs:
        peer_python(lib)
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    with redis_server() as server:
        ceiling = redis_benchmark(server.port)
        for _ in range(rounds):
            for lib in libs:
                results[lib].append(run_lib(lib, server.url))
                print(f"# {lib}: {json.dumps(results[lib][-1])}", flush=True)
        stored = run_results(server.url) if "worker" in libs and os.environ.get("BENCH_RESULTS", "1") != "0" else None
    print(f"\nPython {platform.python_version()}, redis-server {redis_version()}, {os.cpu_count()} CPUs")
    for lib in libs:
        print(f"- {lib}: {versions(lib)}")
    print(
        "\n| library | enqueue 1-by-1 /s | enqueue batched /s | end to end, 1-by-1 /s | end to end, 100 in flight /s | "
        "e2e batched /s | "
        "server cmds/task | worker round trips/task | pickup p50 ms | pickup p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for lib in libs:
        best = max(results[lib], key=lambda r: r["e2e"]["per_s"])
        batched = best.get("e2e_batched")
        print(
            f"| {lib} | {_fmt(best['enqueue_one_per_s'])} | {_fmt(best.get('enqueue_batch_per_s'))} | "
            f"{_fmt(best['e2e_one']['per_s'])} | {_fmt(best['e2e']['per_s'])} | "
            f"{_fmt(batched['per_s'] if batched else None)} | "
            f"{_fmt(best['e2e']['commands_per_task'], 1)} | {_trips(best)} | {_fmt(best['latency_p50_ms'], 2)} | "
            f"{_fmt(best['latency_p99_ms'], 2)} |"
        )
    if stored:
        print(
            f"\nworker-redis result store: end to end {stored['e2e_stored_per_s']:,.0f}/s with outcomes stored, "
            f"{stored['e2e_off_per_s']:,.0f}/s with durable_result_ttl=None ({stored['ratio']:.2f}x); "
            f"handle.result() woken p50 {stored['wake_p50_ms']:.2f} ms, p99 {stored['wake_p99_ms']:.2f} ms after the "
            f"worker's ack returned (p50 {stored['wake_after_send_p50_ms']:.2f} ms after it was sent), "
            f"{stored['samples']} tasks"
        )
    if ceiling:
        print(
            "\nredis-benchmark (-c 16, 200,000 requests): " + ", ".join(f"{k} {v:,.0f}/s" for k, v in ceiling.items())
        )


def run_results(url: str) -> dict[str, Any]:
    """The result store's figures (``_peers/results.py drive``), in this interpreter (worker-redis only)."""
    out = subprocess.run(
        [sys.executable, str(PEERS_DIR / "results.py"), "drive", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise SystemExit(f"result store bench failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# results: {json.dumps(result)}", flush=True)
    return result


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else "?"


if __name__ == "__main__":
    main()
