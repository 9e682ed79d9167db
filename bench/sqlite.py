"""worker-sqlite against Huey's ``SqliteHuey`` on the same machine, in the same run: end to end on one file.

One producer enqueues ``BENCH_N`` (2,000) no-op tasks one call at a time while 1 or 4 worker processes consume
them; timed from the first enqueue to the last completion (each handler appends a byte to a file per process,
which the producer watches). worker-sqlite: each worker process is a ``TaskManager(durable_backend=
"sqlite:///...")`` with 16 workers and the defaults (``synchronous=full``, results kept 1 h); the producer is a
never-started ``TaskManager`` calling ``register_durable_task``. Huey: ``huey_consumer -k process -w 1|4``
(``-d 0.01 -m 0.05``: polls every 10-50 ms instead of the 0.1-10 s default backoff, which would leave its
workers asleep), the producer calling the task. Huey runs in its own virtualenv under ``bench/.envs/huey``.

Run: ``uv run --no-sync python bench/sqlite.py``. ``BENCH_N`` sets the size, ``BENCH_ROUNDS`` (2) the rounds
(the best of each is reported), ``BENCH_LIBS=worker,huey,worker-normal`` the libraries (``worker-normal``:
worker-sqlite with ``?synchronous=normal``, which survives a killed process but may lose the last commits on a
power loss; Huey and the default worker-sqlite use SQLite's default ``synchronous=full``, an fsync per commit).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_peers"
SIDE = PEERS / "sqlite_side.py"
HUEY_ENV = HERE / ".envs" / "huey"
HUEY = "huey==3.5.4"
N = int(os.environ.get("BENCH_N", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
LIBS = os.environ.get("BENCH_LIBS", "worker,huey,worker-normal").split(",")
NAMES = {"worker": "worker-sqlite", "huey": "SqliteHuey", "worker-normal": "worker-sqlite, synchronous=normal"}


def huey_python() -> str:
    python = HUEY_ENV / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            raise SystemExit("uv is needed to build Huey's virtualenv")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([uv, "venv", "-q", "-p", version, str(HUEY_ENV)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), HUEY], check=True)
    return str(python)


def wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("consumers did not start")
        time.sleep(0.02)


def run_once(lib: str, processes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        db, marks = Path(folder) / "tasks.db", Path(folder) / "marks"
        marks.mkdir()
        env = {**os.environ, "BENCH_DB": str(db), "BENCH_MARKS": str(marks), "PYTHONPATH": str(PEERS)}
        env["WORKER_PLUGINS_AUTOLOAD"] = "1"
        consumers: list[subprocess.Popen[bytes]] = []
        log = Path(folder) / "consumer.log"
        try:
            if lib != "huey":
                python = sys.executable
                for _ in range(processes):
                    consumers.append(
                        subprocess.Popen(
                            [python, str(SIDE), lib, "consume", str(db), str(marks)],
                            stdout=log.open("ab"),
                            env=env,
                        )
                    )
                wait_for(lambda: log.exists() and log.read_bytes().count(b"READY") == processes)
            else:
                python = huey_python()
                consumer = [python, "-m", "huey.bin.huey_consumer", "sqlite_huey_app.huey"]
                consumer += ["-k", "process", "-w", str(processes), "-d", "0.01", "-m", "0.05"]
                consumers.append(subprocess.Popen(consumer, stderr=log.open("ab"), cwd=PEERS, env=env))
                wait_for(lambda: log.exists() and b"consumer started" in log.read_bytes().lower())
            done = subprocess.run(
                [python, str(SIDE), lib, "produce", str(db), str(marks), str(N)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
                timeout=600,
            )
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            for process in consumers:
                process.send_signal(signal.SIGTERM)
            for process in consumers:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def versions(lib: str) -> str:
    if lib != "huey":
        return f"worker-sqlite {metadata.version('worker-sqlite')}, SQLite {__import__('sqlite3').sqlite_version}"
    code = (
        "import importlib.metadata as m, sqlite3; print('huey', m.version('huey') + ', SQLite', sqlite3.sqlite_version)"
    )
    return subprocess.run([huey_python(), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main() -> None:
    best: dict[tuple[str, int], dict[str, float]] = {}
    for _ in range(ROUNDS):
        for processes in (1, 4):
            for lib in LIBS:
                figures = run_once(lib, processes)
                key = (lib, processes)
                if key not in best or figures["e2e_s"] < best[key]["e2e_s"]:
                    best[key] = figures
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, N={N}")
    for lib in LIBS:
        print(f"# {lib}: {versions(lib)}")
    print("| library | worker processes | enqueue 1-by-1 /s | end to end /s |")
    print("|---|---|---|---|")
    for (lib, processes), figures in sorted(best.items(), key=lambda item: (item[0][1], LIBS.index(item[0][0]))):
        print(f"| {NAMES[lib]} | {processes} | {N / figures['enqueue_s']:,.0f} | {N / figures['e2e_s']:,.0f} |")
    for processes in (1, 4):
        if ("worker", processes) in best and ("huey", processes) in best:
            ratio = best[("huey", processes)]["e2e_s"] / best[("worker", processes)]["e2e_s"]
            print(f"ratio end to end, {processes} process(es): {ratio:.2f}x SqliteHuey (target >= 2x)")


if __name__ == "__main__":
    main()
