"""The README's tables of supported Temporal releases and PostgreSQL majors, as data for the tests that keep
them true (``tests/test_supported.py`` against pins.env, ``integration/test_upgrade_paths.py`` against the trees)."""

from __future__ import annotations

from devtools.pins import REPO_ROOT

README = REPO_ROOT / "README.md"


def readme_table(first_column: str) -> list[dict[str, str]]:
    """The rows of the README's Markdown table whose header starts with ``| first_column |``."""
    lines = README.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"| {first_column} |"):
            header = [cell.strip() for cell in line.strip("|").split("|")]
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True)))
            return rows
    raise LookupError(f"README.md has no table starting with | {first_column} |")


def supported_releases() -> dict[str, dict[str, str]]:
    """Release -> its row (``default store``, ``visibility store``, ``role in the tests``)."""
    return {row["Temporal release"]: row for row in readme_table("Temporal release")}


def supported_majors() -> dict[int, dict[str, str]]:
    """PostgreSQL major -> its row (``server binaries``, ``tests``)."""
    return {int(row["PostgreSQL major"]): row for row in readme_table("PostgreSQL major")}
