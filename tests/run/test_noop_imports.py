"""A run that finds nothing to do loads only what it runs: importing the rest is most of what a no-op costs
above the Python floor (`bash scripts/bench.sh --noop-only`). Each module below is imported where a plan first
needs it; a top-level import of one of them anywhere on the no-op's path fails this test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from migrator.core.vendor import VendorSchema

NOT_ON_A_NO_OP = [
    "pglast",  # statements are parsed only for versions a plan needs
    "tenacity",  # loaded by migrator.retry after a first failed attempt
    "migrator.core.impact",  # the impact report: pending versions only
    "migrator.core.repair",  # a store behind its target
    "migrator.core.sqlsplit",  # splitting SQL files a plan reads
    "migrator.core.verify",  # after a run that did something
    "migrator.db.activity",  # the stopper's and the watcher's looks at the run's sessions
    "migrator.tool.runner",  # starting the tool
]
# Loaded by every no-op: the control that shows the probe sees what a run imports.
ON_A_NO_OP = ["migrator.core.planner", "migrator.db.driver", "migrator.run.migrate", "structlog", "psycopg"]


def run_probe(version: str, cli_env: pytest.MonkeyPatch) -> dict[str, Any]:
    cli_env.setenv("TEMPORAL_SQL_TOOL", sys.executable)  # any executable: a no-op only checks that it is there
    root = Path(__file__).parents[2]
    found = subprocess.run(
        [sys.executable, "-m", "tests.run.noop_probe", version, *NOT_ON_A_NO_OP, *ON_A_NO_OP],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(found.stdout.splitlines()[-1])
    return result


def test_a_no_op_migrate_loads_no_module_a_plan_with_steps_needs(
    mini_vendor: VendorSchema, cli_env: pytest.MonkeyPatch
) -> None:
    result = run_probe(mini_vendor.newest.name, cli_env)
    assert result["exit_code"] == 0
    assert result["loaded"] == ON_A_NO_OP  # none of NOT_ON_A_NO_OP, and everything a no-op runs


def test_the_probe_sees_a_plan_load_them(mini_vendor: VendorSchema, cli_env: pytest.MonkeyPatch) -> None:
    """The control: a store behind its target has its pending statements read and parsed and is planned with the
    repair and the impact's guard; the probe's tool then refuses the plan's first step (exit 7)."""
    result = run_probe(mini_vendor.versions[-2].name, cli_env)
    assert result["exit_code"] == 7
    loaded = {"pglast", "migrator.core.sqlsplit", "migrator.core.repair", "migrator.core.impact"}
    assert loaded <= set(result["loaded"])
