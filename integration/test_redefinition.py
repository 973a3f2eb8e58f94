"""A version that redefines objects under their own names (an index dropped and re-created with new columns, a
function replaced with a new body), applied by `migrate` from the version before: from untouched and from every
crash point inside it, the store ends as a clean install of the same tree does, with the new definitions (a
presence-only model plans every point but "index dropped" as "already applied" and leaves the old ones).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devtools.databases import AppDb, MakeDb
from devtools.pins import versioned_dir
from integration.support.processes import RunMigrator, events_named
from integration.support.scenarios import TARGETS, reference_dump, tool_to
from migrator.source.tree import load_vendor_schema

OLD = """
CREATE TABLE app_redefined (a INT, b INT);
CREATE INDEX app_redefined_ix ON app_redefined (a);
CREATE FUNCTION app_redefined_f() RETURNS INT AS $$ SELECT 1 $$ LANGUAGE sql;
"""
NEW = """
DROP INDEX app_redefined_ix;
CREATE INDEX app_redefined_ix ON app_redefined (a, b);
CREATE OR REPLACE FUNCTION app_redefined_f() RETURNS INT AS $$ SELECT 2 $$ LANGUAGE sql;
"""
# What the repair does with NEW's statements after a crash at each point: nothing (untouched: the tool runs the
# version), or skip what is in place and run the rest; the OR REPLACE re-runs even when its body is there.
REPAIRS = [
    [],
    ["skipped", "executed", "executed"],
    ["skipped", "skipped", "executed"],
    ["skipped", "skipped", "executed"],
]


def _version(tree: Path, name: str, sql_text: str) -> None:
    directory = versioned_dir(tree, "temporal") / f"v{name}"
    directory.mkdir()
    (directory / "schema.sql").write_text(sql_text)
    manifest = {"CurrVersion": name, "MinCompatibleVersion": "1.0", "Description": name,
                "SchemaUpdateCqlFiles": ["schema.sql"]}  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def tree(schema_dir: Path, tmp_path: Path) -> tuple[Path, str, str]:
    """The pinned default-store tree plus a version that creates the objects and one that redefines them."""
    copy = tmp_path / "tree"
    shutil.copytree(versioned_dir(schema_dir, "temporal"), versioned_dir(copy, "temporal"))
    newest = load_vendor_schema(schema_dir, "temporal").newest.version
    before, redefining = f"{newest.major}.{newest.minor + 1}", f"{newest.major}.{newest.minor + 2}"
    _version(copy, before, OLD)
    _version(copy, redefining, NEW)
    return copy, before, redefining


def _definitions(db: AppDb) -> tuple[str, str]:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT pg_get_indexdef('app_redefined_ix'::regclass), "
            "(SELECT prosrc FROM pg_proc WHERE proname = 'app_redefined_f')"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("applied", range(len(REPAIRS)))
def test_a_redefining_version_ends_with_the_new_definitions_from_every_crash_point(
    make_db: MakeDb, run_migrator: RunMigrator, tree: tuple[Path, str, str], applied: int
) -> None:
    root, before, redefining = tree
    assert TARGETS["temporal"] < before  # the synthetic versions come after the pinned ones
    db = make_db()
    tool_to(db, root, "temporal", before)
    version = load_vendor_schema(root, "temporal").newest
    with db.connect() as conn:  # a crash after ``applied`` statements, run as the tool runs them
        for statement in version.statements[:applied]:
            conn.execute(statement.text.encode())

    env = db.env(MIGRATOR_SCHEMA_DIR=str(root))
    planned = json.loads(run_migrator(db, "plan", "--schema", "temporal", env=env).stdout)
    assert planned["refusal"] is None
    done = run_migrator(db, "migrate", "--schema", "temporal", env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    index, body = _definitions(db)
    assert "(a, b)" in index, index
    assert body.strip() == "SELECT 2"
    assert db.version_rows() == [(db.name, redefining)]
    assert [event["outcome"] for event in events_named(done.stderr, "repair.statement")] == REPAIRS[applied]
    assert db.schema_dump() == reference_dump(make_db, root, "temporal", version=redefining)


def test_a_version_that_recreates_an_index_as_it_was_is_refused_naming_it_and_changes_nothing(
    make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path, tmp_path: Path
) -> None:
    """Untouched and complete-but-unrecorded look the same in the catalog: guessing either could replay or skip
    the version's INSERTs and column resets, so the run refuses (exit 6) and names the index."""
    copy = tmp_path / "tree"
    shutil.copytree(versioned_dir(schema_dir, "temporal"), versioned_dir(copy, "temporal"))
    newest = load_vendor_schema(schema_dir, "temporal").newest.version
    before, same = f"{newest.major}.{newest.minor + 1}", f"{newest.major}.{newest.minor + 2}"
    _version(copy, before, OLD)
    _version(copy, same, "DROP INDEX app_redefined_ix;\nCREATE INDEX app_redefined_ix ON app_redefined (a);\n")
    db = make_db()
    tool_to(db, copy, "temporal", before)
    state = (db.schema_dump(), db.version_rows(), db.history())
    done = run_migrator(db, "migrate", "--schema", "temporal", env=db.env(MIGRATOR_SCHEMA_DIR=str(copy)))
    assert done.returncode == 6, done.stderr[-3000:]
    error = events_named(done.stderr, "run.failed")[0]["error"]
    assert f"fits 0 and 2 of the 2 statements of v{same}" in error
    assert "index app_redefined_ix" in error
    assert (db.schema_dump(), db.version_rows(), db.history()) == state
