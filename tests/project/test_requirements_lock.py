"""The hashed lock files (requirements/, made by scripts/lock.sh) still satisfy pyproject.toml: a dependency
added or tightened without re-locking would otherwise be missing from the image and the test environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PINNED = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.MULTILINE)


def locked(name: str) -> dict[str, str]:
    """Package name -> pinned version, from requirements/<name>.txt."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    return {canonicalize_name(m[1]): m[2] for m in PINNED.finditer(text)}


def test_every_pin_has_a_hash() -> None:
    for name in ("runtime", "test", "build"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / f"{name}.txt").read_text())
        for entry in entries:
            if PINNED.match(entry):
                assert "--hash=sha256:" in entry, f"requirements/{name}.txt: no hash for {entry.splitlines()[0]}"


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime", PYPROJECT["project"]["dependencies"]),
        ("test", PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]),
        ("build", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_lock_satisfies_pyproject(lock: str, requirements: list[str]) -> None:
    pins = locked(lock)
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements/{lock}.txt: run bash scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock}.txt pins {req.name}=={pins[name]}, outside {req.specifier}: run bash scripts/lock.sh"
        )
