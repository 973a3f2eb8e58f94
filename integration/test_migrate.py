"""migrate, status and plan on the real tool and PostgreSQL, as the non-superuser app role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.databases import AppDb, MakeDb
from devtools.pins import Store
from integration.support.processes import RunMigrator, RunTool, events_named
from integration.support.scenarios import TARGETS, half_apply, reference_dump, tool_to, vendor_version


def migrate(run_migrator: RunMigrator, db: AppDb, store: Store, *extra: str) -> None:
    done = run_migrator(db, "migrate", "--schema", store, *extra)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.portable
@pytest.mark.parametrize("store", ["temporal", "visibility"])
def test_fresh_install_reaches_the_target_and_matches_the_bare_tool(
    store: Store, app_db: AppDb, make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    migrate(run_migrator, app_db, store)
    assert app_db.version_rows() == [(app_db.name, TARGETS[store])]
    history = [new for _, new in app_db.history()]
    assert history == sorted(set(history), key=lambda v: tuple(map(int, v.split("."))))
    assert history[0] == "0.0"
    assert history[-1] == TARGETS[store]
    assert app_db.schema_dump() == reference_dump(make_db, schema_dir, store)


@pytest.mark.portable
def test_rerun_is_a_no_op_that_does_not_start_the_tool(app_db: AppDb, run_migrator: RunMigrator) -> None:
    migrate(run_migrator, app_db, "temporal")
    history = app_db.history()
    again = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert again.returncode == 0
    assert events_named(again.stderr, "tool.started") == []
    assert events_named(again.stderr, "migrate.done")[0]["steps"] == []
    assert app_db.history() == history


def test_upgrade_from_an_intermediate_version(
    app_db: AppDb, make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    tool_to(app_db, schema_dir, "temporal", "1.10")
    done = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [e["command"] for e in events_named(done.stderr, "tool.started")] == [
        ["update-schema", "-d", str(schema_dir / "postgresql/v12/temporal/versioned"), "-v", TARGETS["temporal"]]
    ]
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]
    assert app_db.schema_dump() == reference_dump(make_db, schema_dir, "temporal")


def test_seed_row_is_neither_duplicated_nor_lost(app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path) -> None:
    half_apply(app_db, schema_dir, "temporal", "1.0", 3)
    migrate(run_migrator, app_db, "temporal")
    with app_db.connect() as conn:
        rows = conn.execute("SELECT partition_id, notification_version FROM namespace_metadata").fetchall()
    assert rows == [(54321, 1)]


def test_complete_unrecorded_version_keeps_its_data(app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path) -> None:
    """v1.16 drops and re-adds current_executions.data_encoding: replaying it would blank every value."""
    half_apply(app_db, schema_dir, "temporal", "1.16", 2)
    with app_db.connect() as conn:
        conn.execute(
            "INSERT INTO current_executions (shard_id, namespace_id, workflow_id, run_id, create_request_id, state,"
            " status, last_write_version, data, data_encoding)"
            " VALUES (1, 'ns', 'wf', 'run', 'req', 1, 1, 1, 'payload', 'json/plain')"
        )
    migrate(run_migrator, app_db, "temporal")
    with app_db.connect() as conn:
        assert conn.execute("SELECT data_encoding FROM current_executions").fetchall() == [("json/plain",)]


@pytest.mark.parametrize(("version", "applied", "error"), [("1.0", 3, "duplicate key"), ("1.8", 3, "does not exist")])
def test_the_bare_tool_fails_where_the_migrator_repairs(
    version: str, applied: int, error: str, app_db: AppDb, run_tool: RunTool, schema_dir: Path
) -> None:
    """The baseline: these states are the field's incidents, and the tool alone cannot leave them."""
    half_apply(app_db, schema_dir, "temporal", version, applied)
    update = run_tool(app_db, "update-schema", "-d", str(schema_dir / "postgresql/v12/temporal/versioned"))
    assert update.returncode == 1
    assert error in update.stderr


ALTERS = (
    "ALTER TABLE cluster_metadata DROP immutable_data;",
    "ALTER TABLE cluster_metadata DROP immutable_data_encoding;",
)


def test_status_and_plan_change_nothing(app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path) -> None:
    half_apply(app_db, schema_dir, "temporal", "1.4", 1)
    before = (app_db.schema_dump(), app_db.version_rows(), app_db.history())
    status = run_migrator(app_db, "status", "--schema", "temporal")
    planned = run_migrator(app_db, "plan", "--schema", "temporal")
    assert (status.returncode, planned.returncode) == (0, 0)
    document = json.loads(status.stdout)
    target = TARGETS["temporal"]
    assert (document["current_version"], document["state"], document["target_version"]) == ("1.3", "partial", target)
    assert document["pending_versions"][0] == "1.4"
    assert json.loads(planned.stdout)["steps"] == [
        {"action": "skip-statement", "version": "1.4", "statement": 1, "of": 2, "text": ALTERS[0]},
        {"action": "run-statement", "version": "1.4", "statement": 2, "of": 2, "text": ALTERS[1]},
        {"action": "record-version", "version": "1.4", "old_version": "1.3"},
        {"action": "update-schema", "version": target},
    ]
    assert (app_db.schema_dump(), app_db.version_rows(), app_db.history()) == before


# Refusals of a foreign version row or an unparseable version are cases of test_bad_input.py's catalogue.
def _refused(run_migrator: RunMigrator, db: AppDb, fragment: str) -> None:
    before = (db.schema_dump(), db.version_rows(), db.history())
    done = run_migrator(db, "migrate", "--schema", "temporal")
    assert done.returncode == 6, done.stderr[-2000:]
    assert fragment in events_named(done.stderr, "run.failed")[0]["error"]
    assert events_named(done.stderr, "tool.started") == []
    assert (db.schema_dump(), db.version_rows(), db.history()) == before


def test_hand_changed_schema_is_refused_naming_the_objects(
    app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    tool_to(app_db, schema_dir, "temporal", "1.12")
    with app_db.connect() as conn:  # someone dropped one table of v1.13's DROP pair and nothing else
        conn.execute("DROP TABLE nexus_incoming_services_partition_status")
    _refused(run_migrator, app_db, "nexus_incoming_services_partition_status")


def test_vendor_version_helper_reads_the_pinned_tree(schema_dir: Path) -> None:
    assert len(vendor_version(schema_dir, "visibility", "1.2").statements) == 54
