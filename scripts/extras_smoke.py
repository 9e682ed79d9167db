"""Check one ``pip install worker-core[EXTRA]`` as a user gets it: run by ``nox -s extras`` inside a fresh venv.

Usage: ``python scripts/extras_smoke.py EXTRA --expect worker-redis=0.1.0 ... --absent worker-grpc ...``
(``EXTRA`` may be ``-`` for plain ``worker-core``). Each expected distribution is installed at exactly that
version and its import package (``worker_redis`` for ``worker-redis``) imports; each absent one is not
installed. What an extra promises beyond its imports is run too: with ``worker-redis``, the durable example
(``examples/redis_worker.py``) against a private ``redis-server`` this script starts on a free loopback port;
with ``workerctl``, its console script; with ``worker-otel``, the OpenTelemetry SDK; with ``worker-grpc``,
protobuf. Exits non-zero with the reason on the first broken promise.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fail(message: str) -> None:
    print(f"extras_smoke: {message}", file=sys.stderr)
    raise SystemExit(1)


def check_installed(expected: dict[str, str], absent: list[str]) -> None:
    for dist, version in expected.items():
        try:
            found = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            fail(f"{dist} is not installed")
        if found != version:
            fail(f"{dist} {found} installed, not the workspace's {version} (a registry copy won?)")
        importlib.import_module(dist.replace("-", "_"))
    for dist in absent:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        fail(f"{dist} is installed although this extra does not ask for it")


def check_plugins(expected: dict[str, str]) -> None:
    """Every installed sibling that declares a ``worker.plugins`` entry point has it loadable."""
    for entry in importlib.metadata.entry_points(group="worker.plugins"):
        if entry.dist is not None and entry.dist.name in expected:
            entry.load()


def run_redis_example() -> None:
    from worker_redis.testing import redis_server  # shipped in the worker-redis wheel

    with redis_server() as server:
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "redis_worker.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "WORKER_REDIS_URL": server.url},
        )
    if done.returncode != 0:
        fail(f"examples/redis_worker.py exited {done.returncode}:\n{done.stderr}")
    lines = done.stdout.splitlines()
    wanted = ["completed cat.png -> 640px (delivery 1)", "purged: 1 dead letter(s)"]
    if not all(line in lines for line in wanted):
        fail(f"examples/redis_worker.py printed:\n{done.stdout}")
    print(f"extras_smoke: examples/redis_worker.py ran against a private redis-server ({len(lines)} lines)")


def run_workerctl(version: str) -> None:
    exe = Path(sys.executable).parent / "workerctl"
    done = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.startswith(version):
        fail(f"`workerctl version` exited {done.returncode}: {done.stdout}{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("extra")
    parser.add_argument("--expect", action="append", default=[], help="DIST=VERSION that must be installed")
    parser.add_argument("--absent", action="append", default=[], help="DIST that must not be installed")
    args = parser.parse_args()
    expected = dict(item.split("=", 1) for item in args.expect)
    check_installed(expected, args.absent)
    check_plugins(expected)
    if "worker-grpc" in expected:
        importlib.import_module("google.protobuf")
    if "worker-otel" in expected:
        importlib.import_module("opentelemetry.sdk.metrics")
        importlib.import_module("opentelemetry.sdk.trace")
    if "workerctl" in expected:
        run_workerctl(expected["workerctl"])
    if args.extra == "redis":
        run_redis_example()
    label = "worker-core" if args.extra == "-" else f"worker-core[{args.extra}]"
    print(f"extras_smoke: {label} gives {', '.join(sorted(expected))}")


if __name__ == "__main__":
    main()
