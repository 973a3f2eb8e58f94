"""The real tool's output as the migrator reports it: every line with the run's context, a Go panic by its
``panic:`` line, and a termination message that stays JSON.

Each test is a scenario of issue 9 that went wrong on main at b218e95 (exit code then: in the docstring).
"""

from __future__ import annotations

import json
from pathlib import Path

from devtools.databases import AppDb
from devtools.pins import upgrade_sources
from integration.support.plugin import ReleaseFiles
from integration.support.processes import RunMigrator, events_named
from integration.support.scenarios import wrapped_tool


def test_every_tool_output_event_carries_the_database_and_the_store(app_db: AppDb, run_migrator: RunMigrator) -> None:
    """main: tool.output events had no database or schema (the reader thread lost the context)."""
    done = run_migrator(app_db, "migrate", "--schema", "visibility")
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = events_named(done.stderr, "tool.output")
    assert len(outputs) > 10
    assert {(event.get("database"), event.get("schema")) for event in outputs} == {(app_db.name, "visibility")}


def test_a_real_go_panic_is_reported_by_its_panic_line(
    app_db: AppDb, run_migrator: RunMigrator, release_files: ReleaseFiles, tmp_path: Path
) -> None:
    """main: no --connect-attributes (exit 2); a multi-line panic was reported as its last stack frame."""
    # The tool up to v1.29 (the oldest upgrade source) sets sslmode itself and panics on a connect attribute that
    # sets it again; from v1.30 the attribute is allowed. The migrator refuses sslmode in --connect-attributes
    # (--tls owns it), so the tool is handed it behind the migrator's back, in place of a harmless attribute.
    tool, schema_dir = release_files(upgrade_sources()[0])
    panicking = wrapped_tool(tmp_path, tool, rewrite="s/^search_path=public&/sslmode=disable\\&/")
    terminated = tmp_path / "termination-log"
    terminated.touch()  # Kubernetes makes the file; the migrator only writes into it
    env = app_db.env(
        SQL_CONNECT_ATTRIBUTES="search_path=public",
        MIGRATOR_TERMINATION_LOG=str(terminated),
        TEMPORAL_SQL_TOOL=str(panicking),
        MIGRATOR_SCHEMA_DIR=str(schema_dir),
    )
    done = run_migrator(app_db, "migrate", "--schema", "temporal", env=env)
    assert done.returncode == 7, done.stderr[-2000:]
    error = events_named(done.stderr, "run.failed")[0]["error"]
    assert "exit code 2: panic: duplicate connection attr" in error
    assert json.loads(terminated.read_text())["error"] == error
