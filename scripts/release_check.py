"""Check that every distribution of the workspace is releasable as built (run by ``nox -s release``).

Usage: ``python scripts/release_check.py DIST_DIR`` after ``uv build --all-packages -o DIST_DIR``. For each
package under ``packages/`` it checks, and lists every problem before exiting 1:

- the version in ``pyproject.toml`` is the latest release heading of its ``CHANGELOG.md``
  (Keep a Changelog: ``## [Unreleased]`` first, then ``## [X.Y.Z] - YYYY-MM-DD``, newest first);
- every requirement on a sibling distribution (dependencies and extras) has a version range, and the
  range admits the sibling's workspace version (``worker-core>=0.1,<0.2`` admits ``0.1.0``);
- the wheel and the sdist of that version were built, carry ``LICENSE`` and ``py.typed``, and their metadata
  has the license expression, the project URLs, ``Typing :: Typed`` and a classifier for each supported Python;
- worker-core's ``all`` extra names every other extra that pulls a sibling.
"""

from __future__ import annotations

import email.parser
import re
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")
URLS = ("Homepage", "Repository", "Documentation", "Changelog")
HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\S+))?\s*$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Package:
    """One workspace distribution, as its ``pyproject.toml`` declares it."""

    name: str
    version: str
    directory: Path
    requirements: tuple[tuple[str, Requirement], ...]  # (where, requirement): "dependencies", "extra redis"
    extras: Mapping[str, tuple[Requirement, ...]]

    @property
    def dist_stem(self) -> str:
        """The file-name form of the name (``worker_core``)."""
        return self.name.replace("-", "_")


def load_packages(root: Path = ROOT) -> dict[str, Package]:
    """Every ``packages/*/pyproject.toml``, by canonical name."""
    found: dict[str, Package] = {}
    for pyproject in sorted((root / "packages").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        extras = {k: tuple(Requirement(r) for r in v) for k, v in project.get("optional-dependencies", {}).items()}
        reqs = [("dependencies", Requirement(r)) for r in project.get("dependencies", [])]
        reqs += [(f"extra {name}", req) for name, group in extras.items() for req in group]
        package = Package(project["name"], project["version"], pyproject.parent, tuple(reqs), extras)
        found[canonicalize_name(package.name)] = package
    return found


def changelog_problems(text: str, version: str) -> Iterator[str]:
    """What is wrong with a CHANGELOG.md for a package at ``version`` (nothing: it is right)."""
    headings = [m for line in text.splitlines() if (m := HEADING.match(line))]
    if not headings or headings[0]["name"] != "Unreleased":
        yield "the first section is not '## [Unreleased]'"
    releases = [m for m in headings if m["name"] != "Unreleased"]
    if not releases:
        yield f"no release heading; expected '## [{version}] - YYYY-MM-DD'"
        return
    for heading in releases:
        if not DATE.match(heading["date"] or ""):
            yield f"'{heading.group(0)}' has no date (YYYY-MM-DD)"
    if releases[0]["name"] != version:
        yield f"the latest release heading is {releases[0]['name']}, pyproject.toml says {version}"
    versions = [Version(m["name"]) for m in releases]
    if versions != sorted(versions, reverse=True):
        yield "release headings are not newest first"


def range_problems(packages: Mapping[str, Package]) -> Iterator[str]:
    """Sibling requirements without a range, or whose range excludes the sibling's workspace version."""
    for package in packages.values():
        for where, req in package.requirements:
            sibling = packages.get(canonicalize_name(req.name))
            if sibling is None or sibling is package:
                continue  # a third-party requirement, or an extra naming its own package's extras
            if not req.specifier:
                yield f"{package.name} ({where}): {req} has no version range"
            elif not req.specifier.contains(sibling.version, prereleases=True):
                yield f"{package.name} ({where}): {req} does not admit the workspace {sibling.name} {sibling.version}"


def extras_problems(packages: Mapping[str, Package], core: str = "worker-core") -> Iterator[str]:
    """worker-core's ``all`` must name every extra that pulls a sibling distribution."""
    package = packages.get(core)
    if package is None:
        return
    pulling = {
        name
        for name, reqs in package.extras.items()
        if name != "all" and any(canonicalize_name(r.name) in packages for r in reqs)
    }
    named = {extra for r in package.extras.get("all", ()) if canonicalize_name(r.name) == core for extra in r.extras}
    for extra in sorted(pulling - named):
        yield f"{core}[all] does not include the extra {extra!r}"


def metadata_problems(metadata: str, where: str) -> Iterator[str]:
    """Missing license, URLs and classifiers in a METADATA / PKG-INFO text."""
    fields = email.parser.Parser().parsestr(metadata)
    if fields.get("License-Expression") != "MIT":
        yield f"{where}: License-Expression is {fields.get('License-Expression')!r}, not 'MIT'"
    if "LICENSE" not in fields.get_all("License-File", []):
        yield f"{where}: no License-File: LICENSE"
    if not fields.get("Author") and not fields.get("Author-email"):
        yield f"{where}: no author"
    if not fields.get("Keywords"):
        yield f"{where}: no keywords"
    urls = {value.split(",", 1)[0].strip() for value in fields.get_all("Project-URL", [])}
    for label in URLS:
        if label not in urls:
            yield f"{where}: no Project-URL {label}"
    classifiers = set(fields.get_all("Classifier", []))
    for wanted in ("Typing :: Typed", *(f"Programming Language :: Python :: {v}" for v in SUPPORTED)):
        if wanted not in classifiers:
            yield f"{where}: no classifier {wanted!r}"


def artifact_problems(package: Package, dist: Path) -> Iterator[str]:
    """The wheel and sdist of ``package`` in ``dist``: present, with LICENSE, py.typed and full metadata."""
    stem = f"{package.dist_stem}-{package.version}"
    wheel = dist / f"{stem}-py3-none-any.whl"
    sdist = dist / f"{stem}.tar.gz"
    if not wheel.exists():
        yield f"{package.name}: {wheel.name} was not built"
    else:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            if f"{stem}.dist-info/licenses/LICENSE" not in names:
                yield f"{wheel.name}: no {stem}.dist-info/licenses/LICENSE"
            if not any(name.endswith("/py.typed") for name in names):
                yield f"{wheel.name}: no py.typed"
            yield from metadata_problems(archive.read(f"{stem}.dist-info/METADATA").decode(), wheel.name)
    if not sdist.exists():
        yield f"{package.name}: {sdist.name} was not built"
    else:
        with tarfile.open(sdist) as archive:
            names = set(archive.getnames())
            for member in ("LICENSE", "CHANGELOG.md", "README.md", "PKG-INFO"):
                if f"{stem}/{member}" not in names:
                    yield f"{sdist.name}: no {member}"
            info = archive.extractfile(f"{stem}/PKG-INFO")
            if info is not None:
                yield from metadata_problems(info.read().decode(), sdist.name)


def all_problems(dist: Path, root: Path = ROOT) -> list[str]:
    """Every problem found, in order (empty: every distribution is releasable)."""
    packages = load_packages(root)
    problems: list[str] = []
    for package in packages.values():
        changelog = package.directory / "CHANGELOG.md"
        if not changelog.exists():
            problems.append(f"{package.name}: no CHANGELOG.md")
        else:
            problems += [
                f"{package.name} CHANGELOG.md: {p}" for p in changelog_problems(changelog.read_text(), package.version)
            ]
        if not (package.directory / "LICENSE").exists():
            problems.append(f"{package.name}: no LICENSE file")
        problems += artifact_problems(package, dist)
    problems += range_problems(packages)
    problems += extras_problems(packages)
    return problems


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: release_check.py DIST_DIR")
    problems = all_problems(Path(sys.argv[1]))
    for problem in problems:
        print(f"release_check: {problem}", file=sys.stderr)
    if problems:
        raise SystemExit(1)
    versions = ", ".join(f"{p.name} {p.version}" for p in load_packages().values())
    print(f"release_check: releasable: {versions}")


if __name__ == "__main__":
    main()
