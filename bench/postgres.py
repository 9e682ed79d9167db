"""worker-postgres against procrastinate and pgqueuer on one private PostgreSQL server, in one run.

Each peer runs in its own virtualenv under ``bench/.envs`` (created here with ``uv``), each library in its own
database of the same server, one worker process with concurrency 16. Figures per library
(``_peers/pg_peers.py``):

* end to end: one producer enqueuing 5,000 no-op tasks one at a time (each call awaited before the next), first
  enqueue to last completion, with the worker running;
* the producer's enqueue rate during that run;
* pickup latency, enqueue to the handler's first line, p50 and p99, for 1,000 tasks at 200/s to an idle worker.

Run: ``uv run --no-sync python bench/postgres.py``. ``BENCH_N`` and ``BENCH_TRICKLE`` shrink the sizes,
``BENCH_LIBS=worker,pgqueuer`` picks libraries, ``BENCH_ROUNDS`` repeats (the best end-to-end round is shown).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from worker_postgres.testing import postgres_server

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
PEERS_DIR = HERE / "_peers"
PEERS: dict[str, list[str]] = {
    "procrastinate": ["procrastinate==3.10.0", "psycopg[binary,pool]"],
    "pgqueuer": ["pgqueuer==1.6.0", "psycopg[binary]"],
}


def peer_python(lib: str) -> str:
    """The interpreter of ``lib``'s virtualenv, created on first use."""
    if lib == "worker":
        return sys.executable
    env = ENVS / f"pg-{lib}"
    python = env / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            raise SystemExit("uv is needed to build the peers' virtualenvs")
        base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([uv, "venv", "-q", "-p", str(base), str(env)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *PEERS[lib]], check=True)
    return str(python)


def versions(lib: str) -> str:
    names = ["worker-postgres", "psycopg"] if lib == "worker" else [lib, "psycopg"]
    code = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    if lib == "worker":
        return ", ".join(f"{n} {metadata.version(n)}" for n in names)
    out = subprocess.run([peer_python(lib), "-c", code, *names], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def run_lib(lib: str, url: str) -> dict[str, Any]:
    env = {**os.environ, "WORKER_PLUGINS_AUTOLOAD": "1"}
    out = subprocess.run(
        [peer_python(lib), str(PEERS_DIR / "pg_peers.py"), lib, "drive", url],
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


def main() -> None:
    libs = os.environ.get("BENCH_LIBS", "worker,procrastinate,pgqueuer").split(",")
    rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
    for lib in libs:
        peer_python(lib)
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    with postgres_server() as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            server_version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            for lib in libs:
                for n in range(rounds):  # a fresh database per library and round: the same start for each
                    conn.execute(f"CREATE DATABASE bench_{lib}_{n}")
        for n in range(rounds):
            for lib in libs:
                results[lib].append(run_lib(lib, server.url_for(f"bench_{lib}_{n}")))
                print(f"# {lib}: {json.dumps(results[lib][-1])}", flush=True)
    print(f"\nPython {platform.python_version()}, PostgreSQL {server_version}, {os.cpu_count()} CPUs")
    for lib in libs:
        print(f"- {lib}: {versions(lib)}")
    best = {lib: max(results[lib], key=lambda r: r["e2e_per_s"]) for lib in libs}
    print("\n| library | end to end /s (1-by-1 producer) | enqueue /s | pickup p50 ms | pickup p99 ms (200/s) |")
    print("|---|---|---|---|---|")
    for lib in libs:
        r = best[lib]
        print(
            f"| {lib} | {r['e2e_per_s']:,.0f} | {r['enqueue_one_per_s']:,.0f} | {r['pickup_p50_ms']:.2f} | "
            f"{r['pickup_p99_ms']:.2f} |"
        )
    if "worker" in best:
        for peer in (lib for lib in libs if lib != "worker"):
            ratio = best["worker"]["e2e_per_s"] / best[peer]["e2e_per_s"]
            print(f"\nworker-postgres end to end vs {peer}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
