"""The plan is the whole program, on the real tool and server: what decides a repair, what may fail a run,
and that the messages' SQL runs as printed.

Each test is a scenario of issue 9 that went wrong on main at b218e95 (exit code then: in the docstring).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest
from psycopg import errors, sql

from devtools.databases import AppDb, MakeDb
from devtools.pgcluster import create_database, drop_database
from devtools.pins import versioned_dir
from integration.support.processes import RunMigrator, events_named
from integration.support.scenarios import TARGETS, reference_dump, tool_to, wrapped_tool
from migrator.source.tree import load_vendor_schema


def test_an_invalid_index_of_the_application_is_a_warning_not_a_failure(
    app_db: AppDb, run_migrator: RunMigrator
) -> None:
    """main: every migrate exited 7 ("rerun migrate"), forever, while plan said there was nothing to do."""
    done = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert done.returncode == 0, done.stderr[-2000:]
    with app_db.connect() as conn:
        conn.execute("CREATE TABLE app_notes (k TEXT)")
        conn.execute("INSERT INTO app_notes VALUES ('same'), ('same')")
        with pytest.raises(errors.UniqueViolation):  # the build fails on the duplicates and leaves it INVALID
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY app_notes_k ON app_notes (k)")
    assert app_db.invalid_indexes() == ["app_notes_k"]
    for _ in range(2):
        done = run_migrator(app_db, "migrate", "--schema", "temporal")
        assert done.returncode == 0, done.stderr[-2000:]
        warnings = [event["warning"] for event in events_named(done.stderr, "plan.warning")]
        assert any("app_notes_k" in warning for warning in warnings)
    planned = json.loads(run_migrator(app_db, "plan", "--schema", "temporal").stdout)
    assert planned["steps"] == []
    assert app_db.invalid_indexes() == ["app_notes_k"]  # not ours to drop


def test_a_pre_installed_extension_does_not_make_the_store_look_partly_applied(
    app_db: AppDb, make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    """main: state "partial" and 53 vendor statements run by the migrator itself, for a healthy store."""
    vendor = load_vendor_schema(schema_dir, "visibility")
    creates = next(
        version
        for version in vendor.versions
        for statement in version.statements
        for effect in statement.effects
        if effect.ref.kind == "extension"
    )
    before = vendor.versions[vendor.versions.index(creates) - 1].name
    tool_to(app_db, schema_dir, "visibility", before)
    with app_db.server.admin_connect(app_db.name) as conn:  # what our own exit-4 message asks an admin to do
        conn.execute("CREATE EXTENSION btree_gin")
    status = run_migrator(app_db, "status", "--schema", "visibility")
    assert json.loads(status.stdout)["state"] == "behind"
    done = run_migrator(app_db, "migrate", "--schema", "visibility")
    assert done.returncode == 0, done.stderr[-2000:]
    assert events_named(done.stderr, "repair.statement") == []
    assert app_db.schema_dump() == reference_dump(make_db, schema_dir, "visibility")


def _tree_with_an_unmodelled_statement(schema_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """The pinned tree plus one newer default-store version whose second statement the effect model lacks."""
    copy = tmp_path / "tree"
    shutil.copytree(versioned_dir(schema_dir, "temporal"), versioned_dir(copy, "temporal"))
    newest = load_vendor_schema(schema_dir, "temporal").newest.version
    name = f"{newest.major}.{newest.minor + 1}"
    directory = versioned_dir(copy, "temporal") / f"v{name}"
    directory.mkdir()
    (directory / "extra.sql").write_text(
        "CREATE TABLE app_extra (a INT);\nALTER TABLE app_extra RENAME COLUMN a TO b;\n"
    )
    manifest = {
        "CurrVersion": name,
        "MinCompatibleVersion": "1.0",
        "Description": "x",
        "SchemaUpdateCqlFiles": ["extra.sql"],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return copy, name


def test_a_partly_applied_version_with_an_unmodelled_statement_is_refused_naming_it(
    make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path, tmp_path: Path
) -> None:
    """main: the unknown statement counted as "harmless to re-run" and the repair guessed (exit 0)."""
    tree, name = _tree_with_an_unmodelled_statement(schema_dir, tmp_path)
    untouched = make_db()
    tool_to(untouched, schema_dir, "temporal", TARGETS["temporal"])
    plain = run_migrator(untouched, "migrate", "--schema", "temporal", env=untouched.env(MIGRATOR_SCHEMA_DIR=str(tree)))
    assert plain.returncode == 0, plain.stderr[-2000:]  # a plain update-schema of it stays allowed
    assert untouched.version_rows() == [(untouched.name, name)]

    half = make_db()
    tool_to(half, schema_dir, "temporal", TARGETS["temporal"])
    with half.connect() as conn:
        conn.execute("CREATE TABLE app_extra (a INT)")  # a crash after the version's first statement
    before = (half.schema_dump(), half.version_rows(), half.history())
    for command, code in (("plan", 6), ("migrate", 6)):
        done = run_migrator(half, command, "--schema", "temporal", env=half.env(MIGRATOR_SCHEMA_DIR=str(tree)))
        assert done.returncode == code, done.stderr[-2000:]
        assert "ALTER TABLE app_extra RENAME COLUMN a TO b" in events_named(done.stderr, "run.failed")[0]["error"]
    assert (half.schema_dump(), half.version_rows(), half.history()) == before


def test_a_tool_that_only_writes_the_version_row_fails_verification(
    app_db: AppDb, run_migrator: RunMigrator, temporal_tool: Path, tmp_path: Path
) -> None:
    """main: exit 0 — the final check read only the version row."""
    # `setup-schema -v X` records X without running anything: the stand-in turns update-schema into that.
    liar = wrapped_tool(tmp_path, temporal_tool, rewrite="s/^update-schema$/setup-schema/; /^-d$/{N;d;}")
    done = run_migrator(app_db, "migrate", "--schema", "temporal", env=app_db.env(TEMPORAL_SQL_TOOL=str(liar)))
    assert done.returncode == 7, done.stderr[-2000:]
    error = events_named(done.stderr, "run.failed")[0]["error"]
    assert "differs from a clean install" in error
    assert "expected present, found absent" in error
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]


def test_the_grant_a_message_prints_runs_as_printed_for_a_database_named_temporal_dev(
    app_db: AppDb, run_migrator: RunMigrator
) -> None:
    """main: the message printed GRANT ... ON DATABASE Temporal-Dev ..., a syntax error as printed."""
    name = f"Temporal-Dev-{uuid.uuid4().hex[:6]}"
    with app_db.server.admin_connect() as conn:
        create_database(conn, name, "app_other")  # not the app role's: it lacks CREATE on the database
    try:
        with app_db.server.admin_connect(name) as conn:
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(app_db.user)))
        db = AppDb(app_db.server, name, app_db.user, app_db.password, app_db.tool, app_db.schema_dir, "app_other")
        refused = run_migrator(db, "migrate", "--schema", "visibility")
        assert refused.returncode == 4, refused.stderr[-2000:]
        message = events_named(refused.stderr, "run.failed")[0]["error"]
        grant = re.search(r"GRANT CREATE ON DATABASE .*? TO \S+?(?=,)", message)
        assert grant is not None, message
        with app_db.server.admin_connect() as conn:
            conn.execute(grant.group(0).encode())  # exactly as printed
        done = run_migrator(db, "migrate", "--schema", "visibility")
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        with app_db.server.admin_connect() as conn:
            drop_database(conn, name)
