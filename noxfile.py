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
import tempfile
import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
nox.options.sessions = [
    "lock",
    "lint",
    "typecheck",
    "tests",
    "examples",
    "docs",
    "codegen_check",
    "extras",
    "release",
    "image",
]


def _project(package: str) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
    return project


def _extras(package: str) -> dict[str, list[str]]:
    extras = _project(package).get("optional-dependencies", {})
    assert isinstance(extras, dict)
    return extras


DIRS = {str(canonicalize_name(str(_project(p)["name"]))): p for p in PACKAGES}  # distribution -> packages/<dir>
VERSIONS = {name: str(_project(folder)["version"]) for name, folder in DIRS.items()}


def _siblings_installed_by(name: str, extras: frozenset[str]) -> set[str]:
    """Every workspace distribution that installing ``name[extras]`` brings (itself included), transitively."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(name, extras)]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        seen.add(item)
        folder = DIRS[item[0]]
        deps = _project(folder).get("dependencies", [])
        assert isinstance(deps, list)
        reqs = [Requirement(r) for r in deps] + [Requirement(r) for e in item[1] for r in _extras(folder).get(e, [])]
        todo += [
            (str(canonicalize_name(r.name)), frozenset(r.extras)) for r in reqs if canonicalize_name(r.name) in VERSIONS
        ]
    return {dist for dist, _ in seen}


def _own_extras(package: str) -> list[str]:
    """The extras of ``package`` that do not install a distribution depending on ``package`` itself.

    worker-core[redis] installs worker-redis, which needs worker-core: such an extra is a convenience for users,
    and installing it in worker-core's own test environment would hide an undeclared import of worker-redis.
    workerctl[grpc] (worker-grpc needs only worker-core) is kept.
    """
    name = next(dist for dist, folder in DIRS.items() if folder == package)
    kept = []
    for extra, reqs in _extras(package).items():
        siblings = [Requirement(r) for r in reqs if canonicalize_name(Requirement(r).name) in VERSIONS]
        pulled = set().union(
            *(_siblings_installed_by(str(canonicalize_name(r.name)), frozenset(r.extras)) for r in siblings)
        )
        if name not in pulled:
            kept.append(extra)
    return kept


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
    _sync(session, "--all-packages", "--all-extras", "--group", "typecheck", "--group", "docs")  # docs: griffe
    # One run per package: every tests/ has its own conftest.py, which mypy would see as duplicate modules.
    for package in PACKAGES:
        session.run("mypy", f"packages/{package}/src", f"packages/{package}/tests")
    session.run("mypy", "examples", "bench", "scripts", "noxfile.py")
    session.run("mypy", "docs/tests", "docs/_ext", env={"MYPYPATH": "docs/tests"})  # docs/tests imports by name


@nox.session(python=PYTHONS)
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's tests, with only that package and its declared dependencies installed.

    Its extras are installed (worker-redis[hiredis], workerctl[grpc]), except those that install a sibling
    depending on the package itself (worker-core[redis]): an undeclared import of a sibling still fails here.
    """
    extras = [arg for extra in _own_extras(package) for arg in ("--extra", extra)]
    _sync(session, "--package", package, *extras, "--group", "test")
    # Spread over the cores (pytest-xdist): the suites mostly wait on servers and child processes. Every test
    # starts what it needs on free ports and in its own temporary directory, so they run side by side as they
    # do on a busy machine. `uvx nox -s tests -- -n 0` runs one at a time.
    session.run("pytest", f"packages/{package}/tests", "--numprocesses=auto", *session.posargs)


@nox.session(python=PYTHONS[0])
def examples(session: nox.Session) -> None:
    """Run every example program (examples/tests)."""
    _sync(session, "--all-packages", "--all-extras", "--group", "test")
    session.run("pytest", "examples/tests", *session.posargs)


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """Build the documentation site (a broken link or reference fails), then run every code block of its pages."""
    _sync(session, "--all-packages", "--all-extras", "--group", "docs")
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"})
    session.run("pytest", "docs/tests", *session.posargs)


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


def _build(session: nox.Session, out: Path) -> None:
    session.run("uv", "build", "--all-packages", "--quiet", "-o", str(out), external=True)


@nox.session(python=PYTHONS[0], venv_backend="none")
def extras(session: nox.Session) -> None:
    """`pip install worker_core-*.whl[EXTRA]` of the built wheels, each extra in a fresh venv, as a user would.

    Local wheels are found with --find-links, everything else comes from the registry; then
    scripts/extras_smoke.py checks that exactly the promised distributions are there and import ([redis]
    also runs examples/redis_worker.py against a private redis-server). A new extra of worker-core is
    picked up from its pyproject.toml, with nothing to add here.
    """
    python = _FOUND.get(str(session.python), "python3")
    core = _extras("worker-core")
    tested = ["-", *(name for name in core if name not in _own_extras("worker-core"))]  # the extras pulling siblings
    with tempfile.TemporaryDirectory(prefix="worker-extras-") as tmp:
        dist = Path(tmp) / "dist"
        _build(session, dist)
        wheel = dist / f"worker_core-{VERSIONS['worker-core']}-py3-none-any.whl"
        for extra in tested:
            venv = Path(tmp) / ("venv" if extra == "-" else f"venv-{extra}")
            session.run("uv", "venv", "--quiet", "--seed", "--python", python, str(venv), external=True)
            target = str(wheel) if extra == "-" else f"{wheel}[{extra}]"
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            session.run(*pip, "--find-links", str(dist), target, external=True, silent=True)
            wanted = _siblings_installed_by("worker-core", frozenset() if extra == "-" else frozenset({extra}))
            checks = [f"--expect={name}={VERSIONS[name]}" for name in sorted(wanted)]
            checks += [f"--absent={name}" for name in sorted(set(VERSIONS) - wanted)]
            session.run(str(venv / "bin" / "python"), "scripts/extras_smoke.py", extra, *checks, external=True)


@nox.session(python=PYTHONS[0])
def release(session: nox.Session) -> None:
    """Build every distribution; versions match their CHANGELOG, sibling ranges admit them, twine check is clean."""
    _sync(session, "--only-group", "release")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-o", "pythonpath=scripts", "scripts/tests")
    with tempfile.TemporaryDirectory(prefix="worker-release-") as tmp:
        _build(session, Path(tmp))
        session.run("python", "scripts/release_check.py", tmp)
        session.run("twine", "check", "--strict", *sorted(glob.glob(os.path.join(tmp, "*"))))
