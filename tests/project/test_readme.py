"""The README lists every flag, variable and exit code the code has (keeps it true)."""

from __future__ import annotations

from pathlib import Path

from migrator.cli.options import OPTIONS
from migrator.errors import ExitStatus

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_option_is_documented() -> None:
    missing = [name for option in OPTIONS for name in (*option.flags, option.env) if f"`{name}`" not in README]
    assert missing == []


def test_every_exit_code_is_documented() -> None:
    missing = [status for status in ExitStatus if f"| {status.value} |" not in README]
    assert missing == []
