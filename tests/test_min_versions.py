"""The minimum versions pyproject.toml declares are the ones .ci/min_versions installs and tests."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
    return out


def test_every_lower_bound_is_pinned_in_the_minimum_versions_job():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = pins(ROOT / ".ci" / "min_constraints.txt")
    for dep in deps:
        name, op, version = re.match(r"([A-Za-z0-9_.-]+)\s*(>=|==)\s*([0-9][^,;\s]*)", dep).groups()
        assert pinned.get(name.lower()) is not None, f"{name} has no pin in .ci/min_constraints.txt"
        # ">= 2.1" is tested at 2.1.0: the pin is the bound itself, padded with zeros
        assert pinned[name.lower()].split(".")[:len(version.split("."))] == version.split("."), (name, version)
    assert "min_constraints.txt" in (ROOT / ".ci" / "min_versions").read_text()
