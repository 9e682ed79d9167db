"""Every check this repository runs; `uvx nox` runs the default set (what CI runs).

Each session syncs its own environment from the one `uv.lock` with `uv sync --frozen`, so what is
tested is exactly what is locked. `tests` installs a single package with only its declared
dependencies (`uv sync --package P`): an undeclared import of a sibling fails there.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())
SUPPORTED = ("3.11", "3.12", "3.13")


def _working_interpreter(version: str) -> str | None:
    """Path of a `pythonX.Y` that really runs (pyenv shims exist for versions that are not activated)."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    candidates += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for exe in candidates:
        if exe and os.access(exe, os.X_OK):
            ok = subprocess.run([exe, "-c", "import sys"], capture_output=True, check=False).returncode == 0
            if ok:
                return exe
    return None


# Test on every supported CPython that is on the machine; a missing one is skipped, not failed.
_FOUND = {v: exe for v in SUPPORTED if (exe := _working_interpreter(v))}
PYTHONS = list(_FOUND) or [SUPPORTED[0]]
# Put the real interpreters ahead of any shim on PATH, so that uv (and nox) find them by version.
os.environ["PATH"] = os.pathsep.join([*dict.fromkeys(os.path.dirname(e) for e in _FOUND.values()), os.environ["PATH"]])

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["lock", "lint", "typecheck", "tests", "examples", "codegen_check", "image"]


def _sync(session: nox.Session, *args: str) -> None:
    """Install into the session's virtualenv from uv.lock (never re-resolving)."""
    env = {"UV_PROJECT_ENVIRONMENT": session.virtualenv.location}
    python = session.python if isinstance(session.python, str) else PYTHONS[0]
    session.run_install("uv", "sync", "--frozen", "--no-default-groups", f"--python={python}", *args, env=env)


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """uv.lock matches every pyproject.toml."""
    session.run("uv", "lock", "--check")


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    _sync(session, "--only-group", "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's sources and tests, examples and benchmarks."""
    _sync(session, "--all-packages", "--all-extras", "--group", "typecheck")
    # One run per package: every tests/ has its own conftest.py, which mypy would see as duplicate modules.
    for package in PACKAGES:
        session.run("mypy", f"packages/{package}/src", f"packages/{package}/tests")
    session.run("mypy", "examples", "bench", "scripts", "noxfile.py")


@nox.session(python=PYTHONS)
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, with only that package and its declared dependencies installed."""
    _sync(session, "--package", package, "--all-extras", "--group", "test")
    session.run("pytest", f"packages/{package}/tests", *session.posargs)


@nox.session(python=PYTHONS[0])
def examples(session: nox.Session) -> None:
    """Run every example program (examples/tests)."""
    _sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run("pytest", "examples/tests", *session.posargs)


@nox.session(python=PYTHONS[0])
def image(session: nox.Session) -> None:
    """The container image's steps (deploy/build-image.sh, what deploy/Dockerfile runs) in a temporary venv."""
    tmp = Path(session.create_tmp())
    wheels, prefix = tmp / "wheels", tmp / "node"
    for old in (wheels, prefix):
        shutil.rmtree(old, ignore_errors=True)
    for package in ("worker-core", "worker-redis", "worker-otel", "workerctl"):
        session.run("uv", "build", "--quiet", "--wheel", "--package", package, "--out-dir", str(wheels), external=True)
    python = _FOUND.get(PYTHONS[0], "python3")
    session.run("sh", "deploy/build-image.sh", str(prefix), str(wheels), env={"PYTHON": python}, external=True)


@nox.session(python=PYTHONS)
def bench(session: nox.Session) -> None:
    """Benchmarks on each interpreter (`uvx nox -s bench -- bench/core.py`: one script); see bench/README.md."""
    _sync(session, "--all-packages", "--all-extras", "--group", "bench")
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    env = {"PYTHONHASHSEED": "0", **os.environ}
    for script in scripts:
        session.run("python", script, env=env)


def _codegen(session: nox.Session) -> None:
    _sync(session, "--only-group", "codegen")
    session.run("python", "scripts/gen_protos.py")


@nox.session(python=PYTHONS[0])
def codegen(session: nox.Session) -> None:
    """Regenerate worker_grpc/_proto from proto/worker/v1 with the pinned grpcio-tools and mypy-protobuf."""
    _codegen(session)


@nox.session(python=PYTHONS[0])
def codegen_check(session: nox.Session) -> None:
    """The committed generated code is exactly what scripts/gen_protos.py produces (no drift)."""
    _codegen(session)
    generated = "packages/worker-grpc/src/worker_grpc/_proto"
    session.run("git", "diff", "--exit-code", "--", generated, external=True)
    untracked = session.run(
        "git", "ls-files", "--others", "--exclude-standard", "--", generated, external=True, silent=True
    )
    if isinstance(untracked, str) and untracked.strip():
        session.error(f"untracked generated files (run `nox -s codegen` and commit them):\n{untracked}")
