"""The layer contract (pyproject's [tool.importlinter]) holds, and fails on a forbidden import: checked on a copy
of the package, so a test can break it without touching the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "migrator", tmp_path / "migrator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_its_layers(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/versions.py", "import psycopg", "migrator.core is not allowed to import psycopg"),
        ("core/planner.py", "import time", "migrator.core is not allowed to import time"),
        ("db/activity.py", "from migrator.run import lock", "migrator.db is not allowed to import migrator.run"),
        ("core/state.py", "from migrator.db import catalog", "migrator.core is not allowed to import migrator.db"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tree: Path, module: str, line: str, broken: str) -> None:
    path = tree / "migrator" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert broken in result.stdout
