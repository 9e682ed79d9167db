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
import tomllib
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
nox.options.sessions = ["lock", "lint", "typecheck", "tests", "tests_compiled", "examples", "codegen_check"]

# The modules worker-core's optional mypyc build compiles: the hook's `include` list is the one place they are named.
_MYPYC_HOOK = tomllib.loads((ROOT / "packages/worker-core/pyproject.toml").read_text())["tool"]["hatch"]["build"][
    "targets"
]["wheel"]["hooks"]["mypyc"]
COMPILED_MODULES = [p.removeprefix("/src/").removesuffix(".py").replace("/", ".") for p in _MYPYC_HOOK["include"]]


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


def _build_compiled_core(session: nox.Session) -> str:
    """Build worker-core's mypyc-compiled wheel for the session's interpreter; returns the wheel's path.

    `uv build` without `--wheel` builds the sdist, then the wheel from the unpacked sdist in a temporary
    directory: the hook compiles in place, and in place must not be packages/worker-core/src (a stray `.so`
    there would shadow the sources in every editable install).
    """
    out = Path(session.create_tmp()) / "compiled-wheel"
    shutil.rmtree(out, ignore_errors=True)
    python = session.python if isinstance(session.python, str) else PYTHONS[0]
    session.run(
        "uv", "build", f"--python={python}", "--out-dir", str(out), "packages/worker-core",
        env={"HATCH_BUILD_HOOK_ENABLE_MYPYC": "1"}, external=True,
    )  # fmt: skip
    wheels = sorted(out.glob("worker_core-*.whl"))
    if len(wheels) != 1 or wheels[0].name.endswith("-none-any.whl"):
        session.error(f"expected one compiled worker-core wheel in {out}, found {[w.name for w in wheels]}")
    return str(wheels[0])


# Fails unless every module of COMPILED_MODULES imports as an extension module (not the .py beside it).
_ASSERT_COMPILED = """
import importlib, importlib.machinery, sys
import worker_core.manager
print("worker_core.manager:", worker_core.manager.__file__)
pure = [m for m in sys.argv[1:] if not str(importlib.import_module(m).__file__).endswith(
    tuple(importlib.machinery.EXTENSION_SUFFIXES))]
sys.exit(f"not compiled (pure Python imported): {pure}" if pure else None)
"""


def _install_compiled_core(session: nox.Session, wheel: str) -> None:
    """Put the compiled wheel over whatever worker-core the session has, and prove that it is what imports."""
    python = str(Path(session.virtualenv.location) / "bin" / "python")
    session.run("uv", "pip", "install", f"--python={python}", "--no-deps", "--reinstall", wheel, external=True)
    session.run("python", "-c", _ASSERT_COMPILED, *COMPILED_MODULES)


@nox.session(python=PYTHONS)
def tests_compiled(session: nox.Session) -> None:
    """worker-core's and worker-otel's tests against worker-core's mypyc-compiled wheel (built here)."""
    wheel = _build_compiled_core(session)
    # The tests import worker_core from site-packages: pytest puts only the tests' own directories on sys.path.
    _sync(session, "--package", "worker-core", "--all-extras", "--group", "test", "--no-install-package", "worker-core")
    _install_compiled_core(session, wheel)
    session.run("pytest", "packages/worker-core/tests", *session.posargs)
    # worker-otel reaches into the manager's internals: its tests run against the compiled core too.
    _sync(session, "--package", "worker-otel", "--all-extras", "--group", "test", "--no-install-package", "worker-core")
    _install_compiled_core(session, wheel)
    session.run("pytest", "packages/worker-otel/tests", *session.posargs)


@nox.session(python=PYTHONS[0])
def examples(session: nox.Session) -> None:
    """Run every example program (examples/tests)."""
    _sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run("pytest", "examples/tests", *session.posargs)


@nox.session(python=PYTHONS[0])
def bench(session: nox.Session) -> None:
    """Benchmarks; figures and how to read them are in bench/README.md.

    Every script runs against the editable, pure-Python workspace; bench/core.py (when it is among them) then
    runs again against worker-core's mypyc-compiled wheel, installed over the editable one.
    """
    _sync(session, "--all-packages", "--all-extras", "--group", "bench")
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    env = {"PYTHONHASHSEED": "0", **os.environ}
    for script in scripts:
        session.run("python", script, env=env)
    core = [s for s in scripts if Path(s).resolve() == ROOT / "bench" / "core.py"]
    if core:
        _install_compiled_core(session, _build_compiled_core(session))
        session.run("python", core[0], env=env)


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
