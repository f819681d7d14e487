"""The dependency floors of ``pyproject.toml`` against ``.ci/lowest.txt``.

``.ci/run`` installs the project with exactly the versions of ``.ci/lowest.txt`` into a second
virtual environment and runs the suite's fast part there, so a floor is a version the code was
seen to work with. That only holds while each floor is the version pinned there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def floors() -> dict[str, tuple[str, str]]:
    """name -> (floor, where): every ``>=`` of the dependencies and of the test extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found: dict[str, tuple[str, str]] = {}
    for where, requirements in (
        ("dependencies", project["dependencies"]),
        ("test", project["optional-dependencies"]["test"]),
    ):
        for line in requirements:
            requirement = Requirement(line)
            (floor,) = [s.version for s in requirement.specifier if s.operator == ">="]
            found[canonicalize_name(requirement.name)] = (floor, where)
    return found


def pins() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (REPO / ".ci" / "lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f".ci/lowest.txt: {line!r} is not NAME==VERSION"
            pinned[canonicalize_name(name)] = version
    return pinned


def test_every_runtime_dependency_is_installed_at_its_floor_in_ci() -> None:
    runtime = {name for name, (_, where) in floors().items() if where == "dependencies"}
    assert runtime - set(pins()) == set(), "runtime dependencies missing from .ci/lowest.txt"


def test_each_pinned_lowest_version_is_the_floor_pyproject_states() -> None:
    stated = floors()
    pinned = pins()
    assert set(pinned) <= set(stated), "pinned in .ci/lowest.txt but not a dependency"
    wrong = {
        name: (stated[name][0], version)
        for name, version in pinned.items()
        if Version(stated[name][0]) != Version(version)
    }
    assert wrong == {}, "pyproject floor != .ci/lowest.txt pin"


def test_ci_runs_the_fast_part_with_the_lowest_versions() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert '-c .ci/lowest.txt ".[test]"' in script
    assert '"not slow"' in script and "= 5 ]" in script
    # The README's Python: Debian's own, whatever python3 comes first on the caller's PATH.
    assert 'export PATH="/usr/bin:$PATH"' in script
