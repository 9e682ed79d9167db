"""scripts/release_check.py: each mismatch it exists to catch is reported (run by ``nox -s release``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import release_check

GOOD = """\
# Changelog

## [Unreleased]

## [0.2.0] - 2026-12-01

### Added

- a thing

## [0.1.0] - 2026-11-01
"""


def test_a_changelog_whose_latest_release_is_the_version_passes() -> None:
    assert list(release_check.changelog_problems(GOOD, "0.2.0")) == []


def test_a_version_bumped_without_its_changelog_entry_fails() -> None:
    assert list(release_check.changelog_problems(GOOD, "0.3.0")) == [
        "the latest release heading is 0.2.0, pyproject.toml says 0.3.0"
    ]


def test_a_changelog_without_unreleased_first_or_dates_fails() -> None:
    problems = list(release_check.changelog_problems("## [0.1.0]\n\n## [0.2.0] - 2026-12-01\n", "0.1.0"))
    assert "the first section is not '## [Unreleased]'" in problems
    assert "'## [0.1.0]' has no date (YYYY-MM-DD)" in problems
    assert "release headings are not newest first" in problems


def write_package(root: Path, name: str, version: str, deps: list[str], extras: str = "") -> None:
    folder = root / "packages" / name
    folder.mkdir(parents=True)
    listed = ", ".join(f'"{d}"' for d in deps)
    text = f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{listed}]\n'
    if extras:
        text += "\n[project.optional-dependencies]\n" + textwrap.dedent(extras)
    (folder / "pyproject.toml").write_text(text)


def test_a_sibling_range_that_excludes_the_workspace_version_fails(tmp_path: Path) -> None:
    write_package(
        tmp_path, "worker-core", "0.2.0", [], 'redis = ["worker-redis>=0.1,<0.2"]\nall = ["worker-core[redis]"]\n'
    )
    write_package(tmp_path, "worker-redis", "0.1.0", ["worker-core>=0.1,<0.2", "redis>=5"])
    write_package(tmp_path, "workerctl", "0.1.0", ["worker-core"])
    problems = list(release_check.range_problems(release_check.load_packages(tmp_path)))
    assert problems == [
        "worker-redis (dependencies): worker-core<0.2,>=0.1 does not admit the workspace worker-core 0.2.0",
        "workerctl (dependencies): worker-core has no version range",
    ]


def test_an_extra_missing_from_all_fails(tmp_path: Path) -> None:
    extras = 'redis = ["worker-redis>=0.1,<0.2"]\ncli = ["workerctl>=0.1,<0.2"]\nall = ["worker-core[redis]"]\n'
    write_package(tmp_path, "worker-core", "0.1.0", [], extras)
    write_package(tmp_path, "worker-redis", "0.1.0", ["worker-core>=0.1,<0.2"])
    write_package(tmp_path, "workerctl", "0.1.0", ["worker-core>=0.1,<0.2"])
    packages = release_check.load_packages(tmp_path)
    assert list(release_check.extras_problems(packages)) == ["worker-core[all] does not include the extra 'cli'"]
    assert list(release_check.range_problems(packages)) == []


def test_metadata_without_urls_license_or_classifiers_fails() -> None:
    metadata = "Metadata-Version: 2.4\nName: x\nVersion: 0.1.0\nClassifier: Typing :: Typed\n"
    problems = list(release_check.metadata_problems(metadata, "x.whl"))
    assert "x.whl: License-Expression is None, not 'MIT'" in problems
    assert "x.whl: no Project-URL Changelog" in problems
    assert "x.whl: no classifier 'Programming Language :: Python :: 3.13'" in problems
    assert "x.whl: no classifier 'Typing :: Typed'" not in problems


def test_the_workspace_itself_is_consistent() -> None:
    packages = release_check.load_packages()
    assert {"worker-core", "worker-redis", "workerctl"} <= set(packages)
    assert list(release_check.range_problems(packages)) == []
    assert list(release_check.extras_problems(packages)) == []
