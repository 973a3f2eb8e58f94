"""Online or plain, as `plan` and `migrate` decide it on the real tool and server: a visibility store at 1.12
holding rows plans `online-rewrite executions_visibility (1.13, 1.14)` online and one update-schema plain; each
preflight refusal exits 6 before any DDL and changes nothing; an online rewrite's state row is observed. The
catalog queries behind them (the state row's guard, the preflight's facts) run on every major: portable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.data import fill
from devtools.databases import AppDb, MakeDb
from devtools.pins import versioned_dir
from integration.support.processes import RunMigrator, bring_to, events_named
from integration.support.scenarios import tool_to
from migrator.core.online import WORK_SCHEMA
from migrator.source.tree import load_vendor_schema

pytestmark = pytest.mark.portable

ROWS = 500
GROUP = "online-rewrite executions_visibility (1.13, 1.14)"


def visibility_at_1_12(make_db: MakeDb, schema_dir: Path) -> AppDb:
    newest = load_vendor_schema(schema_dir, "visibility").newest.name
    assert newest == "1.14", f"the pinned tree's visibility store ends at {newest}: update this test's versions"
    db = make_db()
    tool_to(db, schema_dir, "visibility", "1.12")
    with db.connect() as conn:
        fill(conn, "executions_visibility", ROWS)
        # its free space and visibility maps now, not from autovacuum between the plan and the size it is checked by
        conn.execute("VACUUM ANALYZE executions_visibility")
    return db


def planned(run_migrator: RunMigrator, db: AppDb, *args: str, code: int = 0) -> dict[str, Any]:
    proc = run_migrator(db, "plan", "--schema", "visibility", "-o", "json", *args)
    assert proc.returncode == code, proc.stderr[-2000:]
    document: dict[str, Any] = json.loads(proc.stdout)
    return document


def untouched(db: AppDb) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    return db.schema_dump(), db.version_rows(), db.history()


def test_plan_at_1_12_shows_one_online_rewrite_online_and_one_update_plain(
    make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    db = visibility_at_1_12(make_db, schema_dir)
    table = run_migrator(db, "plan", "--schema", "visibility", "-o", "table", "--rewrite-mode", "online")
    assert table.returncode == 0, table.stderr[-2000:]
    assert GROUP in table.stdout

    online = planned(run_migrator, db, "--rewrite-mode", "online")
    first = online["steps"][0]
    assert (first["action"], first["table"], first["versions"]) == ("online-rewrite", "executions_visibility",
                                                                    ["1.13", "1.14"])  # fmt: skip
    assert first["statements"] == 2 + 17 + 2  # the two ALTER TABLEs and 19 CREATE INDEX CONCURRENTLY
    assert "--rewrite-mode online" in first["reason"]
    records = [step for step in online["steps"] if step["action"] == "record-version"]
    assert records == [
        {"action": "record-version", "version": "1.13", "old_version": "1.12"},
        {"action": "record-version", "version": "1.14", "old_version": "1.13"},
    ]
    assert {step["action"] for step in online["steps"][1:]} == {"skip-statement", "run-statement", "record-version"}
    with db.connect() as conn:
        total = conn.execute("SELECT pg_total_relation_size('executions_visibility')").fetchone()
    assert total is not None
    [decision] = online["rewrites"]
    assert (decision["path"], decision["bytes"], decision["extra_disk_bytes"]) == ("online", total[0], total[0])

    plain = planned(run_migrator, db, "--rewrite-mode", "plain")
    assert plain["steps"] == [{"action": "update-schema", "version": "1.14"}]
    assert [item["path"] for item in plain["rewrites"]] == ["plain"]

    auto_small = planned(run_migrator, db, "--max-stall", "3600")
    assert auto_small["steps"] == [{"action": "update-schema", "version": "1.14"}]
    assert "<= --max-stall 3600 s" in auto_small["rewrites"][0]["reason"]
    auto_large = planned(run_migrator, db, "--max-stall", "0")
    assert auto_large["steps"][0]["action"] == "online-rewrite"
    assert "> --max-stall 0 s" in auto_large["steps"][0]["reason"]


def _view(db: AppDb) -> None:
    with db.connect() as conn:
        conn.execute("CREATE VIEW recent_runs AS SELECT run_id FROM executions_visibility")


def _publication(db: AppDb) -> None:
    with db.server.admin_connect(db.name) as conn:  # FOR ALL TABLES needs a superuser
        conn.execute("CREATE PUBLICATION everything FOR ALL TABLES")


def _trigger(db: AppDb) -> None:
    with db.connect() as conn:
        conn.execute("CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$")
        conn.execute(
            "CREATE TRIGGER audit_runs AFTER INSERT ON executions_visibility FOR EACH ROW EXECUTE FUNCTION audit()"
        )


@pytest.mark.parametrize(
    ("make_unsafe", "named"),
    [
        (_view, "view recent_runs"),
        (_publication, "FOR ALL TABLES publication everything"),
        (_trigger, "trigger audit_runs"),
    ],
)
def test_a_refused_online_rewrite_exits_6_and_changes_nothing(
    make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path, make_unsafe: Any, named: str
) -> None:
    db = visibility_at_1_12(make_db, schema_dir)
    make_unsafe(db)
    before = untouched(db)
    for command in ("plan", "migrate"):
        done = run_migrator(db, command, "--schema", "visibility", "--rewrite-mode", "online")
        assert done.returncode == 6, done.stderr[-2000:]
        error = events_named(done.stderr, "run.failed")[0]["error"]
        assert named in error
        assert "changed nothing" in error
    assert untouched(db) == before
    # auto: the refusal is a warning, and the versions run plain (under the --max-rewrite-size guard)
    auto = planned(run_migrator, db, "--max-stall", "0")
    assert auto["steps"] == [{"action": "update-schema", "version": "1.14"}]
    assert any(named in warning for warning in auto["warnings"])


def _tree_without_a_primary_key(tmp_path: Path) -> Path:
    """A default-store tree whose second version adds a stored generated column to a table without a key."""
    versions = {
        "1.0": "CREATE TABLE events (id BIGINT NOT NULL, payload TEXT);",
        "1.1": "ALTER TABLE events ADD COLUMN size BIGINT GENERATED ALWAYS AS (length(payload)) STORED;",
    }
    for name, text in versions.items():
        directory = versioned_dir(tmp_path, "temporal") / f"v{name}"
        directory.mkdir(parents=True)
        (directory / "schema.sql").write_text(text + "\n")
        manifest = {
            "CurrVersion": name,
            "MinCompatibleVersion": "1.0",
            "Description": f"v{name}",
            "SchemaUpdateCqlFiles": ["schema.sql"],
        }
        (directory / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_table_without_a_primary_key_is_refused_online(
    make_db: MakeDb, run_migrator: RunMigrator, tmp_path: Path
) -> None:
    tree = _tree_without_a_primary_key(tmp_path)
    db = make_db()
    assert db.tool is not None
    bring_to(db.tool, db, tree, "temporal", "1.0")
    with db.connect() as conn:
        conn.execute("INSERT INTO events SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
    env = db.env(MIGRATOR_SCHEMA_DIR=str(tree), MIGRATOR_SCHEMA="temporal")
    before = untouched(db)
    for command in ("plan", "migrate"):
        done = run_migrator(db, command, "--rewrite-mode", "online", env=env)
        assert done.returncode == 6, done.stderr[-2000:]
        error = events_named(done.stderr, "run.failed")[0]["error"]
        assert "events has no primary key" in error
        assert "changed nothing" in error
    assert untouched(db) == before
    plain = run_migrator(db, "migrate", "--rewrite-mode", "plain", env=env)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert db.version_rows() == [(db.name, "1.1")]


def test_an_online_rewrite_in_progress_is_observed_and_planned_as_resume_or_abort(
    make_db: MakeDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    """The state row the engine keeps, written by hand: status shows it, plan resumes it, --abort-online plans
    the abort alone, --rewrite-mode plain and an abort after the swap are refused (exit 6)."""
    db = visibility_at_1_12(make_db, schema_dir)
    status = json.loads(run_migrator(db, "status", "--schema", "visibility", "-o", "json").stdout)
    assert (status["state"], status["online_rewrite"]) == ("behind", None)  # no schema: nothing in progress
    with db.connect() as conn:
        conn.execute(f"CREATE SCHEMA {WORK_SCHEMA}")
        conn.execute(f"CREATE TABLE {WORK_SCHEMA}.state (table_name text, versions text[], phase text)")
        conn.execute(f"INSERT INTO {WORK_SCHEMA}.state VALUES ('executions_visibility', '{{1.13,1.14}}', 'copy')")
    status = json.loads(run_migrator(db, "status", "--schema", "visibility", "-o", "json").stdout)
    assert status["state"] == "online-rewrite in progress (copy)"
    assert status["online_rewrite"] == {"table": "executions_visibility", "versions": ["1.13", "1.14"], "phase": "copy"}

    resume = planned(run_migrator, db)
    assert resume["steps"][0]["action"] == "online-rewrite"
    assert resume["steps"][0]["versions"] == ["1.13", "1.14"]
    assert "resumes" in resume["steps"][0]["reason"]
    abort = planned(run_migrator, db, "--abort-online")
    assert abort["steps"] == [{"action": "abort-online", "table": "executions_visibility"}]
    refused = planned(run_migrator, db, "--rewrite-mode", "plain", code=6)
    assert "--abort-online" in refused["refusal"]
    with db.connect() as conn:
        conn.execute(f"UPDATE {WORK_SCHEMA}.state SET phase = 'cleanup'")
    swapped = planned(run_migrator, db, "--abort-online", code=6)
    assert "run migrate without --abort-online" in swapped["refusal"]
