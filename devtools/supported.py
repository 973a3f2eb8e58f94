"""The supported Temporal releases (README.md) and PostgreSQL majors (CONTRIBUTING.md, with the binaries the tests
use; README.md names them in one line) as data for the tests that keep them true
(``tests/project/test_supported.py`` against pins.env, ``integration/test_upgrade_paths.py`` against the trees)."""

from __future__ import annotations

import re
from pathlib import Path

from devtools.pins import REPO_ROOT

README = REPO_ROOT / "README.md"
CONTRIBUTING = REPO_ROOT / "CONTRIBUTING.md"


def readme_table(first_column: str, document: Path = README) -> list[dict[str, str]]:
    """The rows of ``document``'s Markdown table whose header starts with ``| first_column |``."""
    lines = document.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"| {first_column} |"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True)))
            return rows
    raise LookupError(f"{document.name} has no table starting with | {first_column} |")


def supported_releases() -> dict[str, dict[str, str]]:
    """Release -> its row (``default store``, ``visibility store``, ``role in the tests``)."""
    return {row["Temporal release"]: row for row in readme_table("Temporal release")}


def supported_majors() -> dict[int, dict[str, str]]:
    """PostgreSQL major -> its row (``server binaries``, ``tests``)."""
    return {int(row["PostgreSQL major"]): row for row in readme_table("PostgreSQL major", CONTRIBUTING)}


def readme_majors() -> list[int]:
    """The majors the README's one line names, in its order (the first runs the full suite)."""
    [line] = [line for line in README.read_text().splitlines() if line.startswith("PostgreSQL majors:")]
    return [int(major) for major in re.findall(r"\b(\d{2})\b", line.split("PostgreSQL 12")[0])]
