"""The README and the reference list every flag, variable and exit code the code has (keeps them true)."""

from __future__ import annotations

import re
from pathlib import Path

from devtools.reference import COMMON_OPTIONS
from migrator.cli.options import OPTIONS
from migrator.errors import ExitStatus

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


def test_every_option_is_in_the_reference() -> None:
    missing = [name for option in OPTIONS for name in (*option.flags, option.env) if f"`{name}`" not in REFERENCE]
    assert missing == []


def test_the_common_options_are_in_the_readme_with_their_defaults() -> None:
    for option in (o for o in OPTIONS if o.dest in COMMON_OPTIONS):
        default = f"`{option.default}`" if option.default else ""
        assert re.search(rf"^\| `{option.flags[0]}` \| `{option.env}` \| {re.escape(default)}", README, re.M), option


def test_every_exit_code_is_documented() -> None:
    for text in (README, REFERENCE):
        missing = [status for status in ExitStatus if f"| {status.value} |" not in text]
        assert missing == []


def test_the_readme_stays_short() -> None:
    assert len(README.splitlines()) <= 250
