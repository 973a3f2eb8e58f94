"""`--output table`: what a person reads, checked cell by cell, and the choice between table and JSON."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from migrator.cli import commands
from migrator.cli import main as cli
from migrator.cli.render import WIDTH, default_output, render, render_table
from migrator.core.planner import plan
from migrator.core.settings import Settings
from migrator.core.state import Catalog, State
from migrator.core.vendor import VendorSchema, VendorVersion
from migrator.errors import ExitStatus

REWRITE = "v1.13 rewrites executions_visibility (35.1M rows, 48 GB) under ACCESS EXCLUSIVE"


def status_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "database": "temporal_visibility",
        "schema": "visibility",
        "current_version": "1.12",
        "target_version": "1.14",
        "state": "behind",
        "pending_versions": ["1.13", "1.14"],
        "refusal": None,
        "warnings": [],
        "invalid_indexes": [],
    }
    document.update(changes)
    return document


def with_impact(document: dict[str, Any]) -> dict[str, Any]:
    """wt-online's shape: one item per pending version; here only 1.13 has a summary."""
    statement = {"index": 1, "statement": "ALTER TABLE executions_visibility ADD ...", "table": "executions_visibility"}
    return {
        **document,
        "impact": [
            {"version": "1.13", "summary": REWRITE, "statements": [statement]},
            {"version": "1.14", "statements": []},
        ],
    }


def cells(table: str, line: int) -> list[str]:
    """The cells of a table line, split on the two-space column gap."""
    return [cell.strip() for cell in table.splitlines()[line].split("  ") if cell.strip()]


def fits(text: str) -> bool:
    return all(len(line) <= WIDTH for line in text.splitlines())


def test_status_row_has_store_database_versions_state_and_pending() -> None:
    table = render_table(status_document())
    assert cells(table, 0) == ["STORE", "DATABASE", "CURRENT", "TARGET", "STATE", "PENDING"]
    assert cells(table, 1) == ["visibility", "temporal_visibility", "1.12", "1.14", "behind", "1.13, 1.14"]
    assert [title for title in ("Impact", "Warnings", "Refused") if title in table] == []


def test_status_shows_each_impact_summary_that_is_present() -> None:
    table = render_table(with_impact(status_document()))
    lines = table.splitlines()
    assert lines[lines.index("Impact:") + 1] == "  " + REWRITE
    assert lines[-1] == "  " + REWRITE  # nothing rendered for 1.14, whose item has no summary


def test_a_long_database_name_is_shown_whole_when_it_fits() -> None:
    name = "temporal_visibility_production_eu_west_1_blue"
    assert cells(render_table(status_document(database=name)), 1)[1] == name


def test_many_pending_versions_are_a_range_and_a_count() -> None:
    pending = [f"1.{minor}" for minor in range(19)]
    table = render_table(status_document(current_version=None, state="empty", pending_versions=pending))
    assert cells(table, 1)[2] == "none"
    assert cells(table, 1)[-1] == "1.0 … 1.18 (19)"


def test_refusal_warnings_and_invalid_indexes_are_shown_wrapped_to_100_columns() -> None:
    refusal = "Temporal tables (buffered_events, ...) exist but schema_version has no row " * 3
    document = status_document(
        database="d" * 80,
        state="refused",
        pending_versions=[],
        refusal=refusal.strip(),
        warnings=["database is at 1.19, ahead of target 1.18; never downgrading"],
        invalid_indexes=["by_status", "by_type"],
    )
    table = render_table(document)
    assert fits(table)
    assert cells(table, 1)[1] == "d" * 52 + "…"  # cut just enough to fit:
    assert max(len(line) for line in table.splitlines()[:2]) == WIDTH
    words = " ".join(table.split())  # wrapped lines joined back: every fact is there, in full
    assert "Refused (exit 6 for plan and migrate; nothing changed): " + " ".join(refusal.split()) in words
    assert "Warnings: database is at 1.19, ahead of target 1.18; never downgrading" in words
    assert "INVALID indexes: by_status, by_type" in words


def plan_document(impact: bool) -> dict[str, Any]:
    document = status_document(
        current_version="1.11",
        state="partial",
        pending_versions=["1.12", "1.13", "1.14"],
        steps=[
            {"action": "skip-statement", "version": "1.12", "statement": 1, "of": 2, "text": "CREATE TABLE a (x INT)"},
            {"action": "run-statement", "version": "1.12", "statement": 2, "of": 2, "text": "DROP TABLE b"},
            {"action": "record-version", "version": "1.12", "old_version": "1.11"},
            {"action": "update-schema", "version": "1.14"},
        ],
        blocked="role 'app' may not CREATE in schema 'public'",
    )
    return with_impact(document) if impact else document


def test_plan_lists_each_step_with_the_impact_of_the_versions_it_applies() -> None:
    table = render_table(plan_document(impact=True))
    lines = table.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("STEP")))
    assert cells(table, header) == ["STEP", "ACTION", "VERSION", "DETAIL"]
    assert cells(table, header + 1) == ["1", "skip-statement", "1.12", "1/2 in place, skipped: CREATE TABLE a (x INT)"]
    assert cells(table, header + 2) == ["2", "run-statement", "1.12", "2/2 runs: DROP TABLE b"]
    assert cells(table, header + 3) == ["3", "record-version", "1.12", "records it as the tool does (was 1.11)"]
    assert cells(table, header + 4) == ["4", "update-schema", "1.14", "applies 1.13, 1.14"]
    assert lines[header + 5].strip() == REWRITE  # under the step that applies 1.13, not under the repair
    assert lines[header + 5].startswith("      ")
    assert "Blocked (migrate would stop before any DDL):\n  role 'app' may not CREATE" in table
    assert "Impact:" not in table  # plan shows impact per step only
    assert fits(table)


def test_plan_of_a_database_to_create() -> None:
    document = status_document(
        current_version=None,
        state="absent",
        steps=[
            {"action": "create-database", "database": "temporal_visibility"},
            {"action": "setup-schema", "version": "0.0"},
            {"action": "update-schema", "version": "1.14"},
        ],
        blocked=None,
    )
    table = render_table(document)
    lines = table.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("STEP")))
    assert cells(table, header + 1) == [
        "1",
        "create-database",
        "-",
        "creates database 'temporal_visibility', owned by the role",
    ]
    assert cells(table, header + 2)[:3] == ["2", "setup-schema", "0.0"]
    assert cells(table, header + 3) == ["3", "update-schema", "1.14", "applies 1.13, 1.14"]


def test_plan_without_impact_or_steps() -> None:
    without = render_table(plan_document(impact=False))
    assert REWRITE not in without
    assert "applies 1.13, 1.14" in without
    current = render_table(status_document(state="current", pending_versions=[], steps=[], blocked=None))
    assert "Steps: none" in current


def test_json_output_is_the_document() -> None:
    document = with_impact(status_document())
    assert json.loads(render(document, "json")) == document


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_default_output_is_table_on_a_terminal_and_json_elsewhere() -> None:
    assert default_output(_Terminal()) == "table"
    assert default_output(io.StringIO()) == "json"


# -- through the command line --------------------------------------------------------------------------


@pytest.fixture
def observed(cli_env: pytest.MonkeyPatch, mini_vendor: VendorSchema) -> None:
    """`status`/`plan` observe a database at 1.0 of the mini tree, without a server."""
    monkeypatch = cli_env

    def inspect(settings: Settings, vendor: VendorSchema, target: VendorVersion) -> tuple[State, Any]:
        tables = frozenset({"schema_version", "accounts", "meta", "old_tasks"})
        state = State("temporal", version="1.0", catalog=Catalog(tables=tables))
        return state, plan(state, mini_vendor, target)  # its statements read

    monkeypatch.setattr(commands, "inspect", inspect)


@pytest.mark.usefixtures("observed")
@pytest.mark.parametrize(("argv", "env"), [(["status", "-o", "table"], {}), (["status"], {"MIGRATOR_OUTPUT": "TABLE"})])
def test_status_table_from_the_flag_or_the_variable(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(argv) == ExitStatus.OK
    table = capsys.readouterr().out
    assert cells(table, 1) == ["temporal", "temporal", "1.0", "1.10", "behind", "1.1, 1.2, 1.10"]


@pytest.mark.usefixtures("observed")
def test_plan_without_a_terminal_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan"]) == ExitStatus.OK
    document = json.loads(capsys.readouterr().out)
    assert document["steps"] == [{"action": "update-schema", "version": "1.10"}]


@pytest.mark.usefixtures("observed")
def test_unknown_output_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--output", "yaml"]) == ExitStatus.USAGE
    assert "--output/MIGRATOR_OUTPUT 'yaml' is not supported; use one of: json, table" in capsys.readouterr().err


ONLINE_DECISION = {
    "table": "executions_visibility",
    "versions": ["1.13", "1.14"],
    "path": "online",
    "bytes": 1600 * 1024**2,
    "estimated_stall_seconds": 64.0,
    "extra_disk_bytes": 1600 * 1024**2,
    "reason": "1.6 GB, a plain rewrite stalls it about 64.0 s (at 25 MB/s) > --max-stall 1 s",
    "refusals": [],
}


def test_plan_shows_the_online_rewrite_its_reason_and_the_disk_it_holds() -> None:
    rewrite = {
        "action": "online-rewrite",
        "table": "executions_visibility",
        "versions": ["1.13", "1.14"],
        "statements": 21,
        "reason": ONLINE_DECISION["reason"],
    }
    build = {"action": "build-index-concurrently", "version": "1.1", "table": "executions_visibility", "index": "by_x"}
    steps = [build, rewrite, {"action": "record-version", "version": "1.13", "old_version": "1.12"}]
    table = render_table(status_document(steps=steps, blocked=None, rewrites=[ONLINE_DECISION]))
    assert "Rewrites:\n  online-rewrite executions_visibility (1.13, 1.14): 1.6 GB, a plain rewrite stalls it" in table
    assert "holds about 1.6 GB more disk for the whole run" in table
    lines = table.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("STEP")))
    assert cells(table, header + 1) == [
        "1",
        "build-index-concurrently",
        "1.1",
        "builds by_x CONCURRENTLY first (writes go on)",
    ]
    assert cells(table, header + 2)[:3] == ["2", "online-rewrite", "1.13, 1.14"]
    assert "executions_visibility on a shadow table, swapped in (" in lines[header + 2]
    assert fits(table)


def test_status_shows_an_online_rewrite_in_progress_and_how_to_go_on() -> None:
    online = {"table": "executions_visibility", "versions": ["1.13", "1.14"], "phase": "copy"}
    document = status_document(state="online-rewrite in progress (copy)", online_rewrite=online)
    table = render_table(document)
    assert cells(table, 1)[4:6] == ["online-rewrite in progress (copy)", "1.13, 1.14"]
    assert "Online rewrite in progress:\n  executions_visibility (1.13, 1.14), phase copy: migrate resumes it" in table
    abort = render_table({**document, "steps": [{"action": "abort-online", "table": "executions_visibility"}]})
    assert "undoes the rewrite in progress; executions_visibility unchanged" in abort


def test_plain_and_concurrent_decisions_are_listed_without_disk() -> None:
    plain = {**ONLINE_DECISION, "path": "plain", "extra_disk_bytes": None, "reason": "--rewrite-mode plain"}
    concurrent = {**plain, "path": "concurrent-index", "versions": ["1.1"], "reason": "built first"}
    table = render_table(status_document(rewrites=[concurrent, plain]))
    assert "  build-index-concurrently executions_visibility (1.1): built first" in table
    assert "  plain executions_visibility (1.13, 1.14): --rewrite-mode plain" in table
    assert "more disk" not in table
