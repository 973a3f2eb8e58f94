"""`status`/`plan --output table` on a real database: the README's example (v1.16 half-applied), cell by cell."""

from __future__ import annotations

from pathlib import Path

from packaging.version import Version

from devtools.databases import AppDb
from integration.support.processes import RunMigrator, bring_to
from migrator.source.tree import load_vendor_schema


def cells(line: str) -> list[str]:
    return line.split()


def test_table_of_a_half_applied_version(
    app_db: AppDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    bring_to(temporal_tool, app_db, schema_dir, "temporal", "1.15")
    with app_db.connect() as conn:  # a row of ours, and the first statement of v1.16 as a crashed run left it
        conn.execute("INSERT INTO namespace_metadata (partition_id, notification_version) VALUES (1, 1)")
        conn.execute("ALTER TABLE current_executions DROP COLUMN data_encoding")
    vendor = load_vendor_schema(schema_dir, "temporal")
    newest = vendor.newest.name
    after = [item.name for item in vendor.versions if item.version > Version("1.16")]

    status = run_migrator(app_db, "status", "--output", "table")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert cells(lines[0]) == ["STORE", "DATABASE", "CURRENT", "TARGET", "STATE", "PENDING"]
    store, database, *row = cells(lines[1])[:5]
    assert [store, *row] == ["temporal", "1.15", newest, "partial"]
    assert app_db.name.startswith(database.removesuffix("…"))  # a long name is cut to fit 100 columns
    assert len(database) >= 16
    assert lines[1].split("partial", 1)[1].strip() == ", ".join(["1.16", *after])

    plan = run_migrator(app_db, "plan", env=app_db.env(MIGRATOR_OUTPUT="table"))
    assert plan.returncode == 0, plan.stderr
    table = plan.stdout.splitlines()[plan.stdout.splitlines().index("") + 1 :]
    steps = [line for line in table if cells(line)[:1] == ["STEP"] or line[:1].isdigit()]  # not the impact lines
    assert cells(steps[0]) == ["STEP", "ACTION", "VERSION", "DETAIL"]
    assert cells(steps[1])[:4] == ["1", "skip-statement", "1.16", "1/2"]
    assert cells(steps[2])[:4] == ["2", "run-statement", "1.16", "2/2"]
    assert cells(steps[3])[:3] == ["3", "record-version", "1.16"]
    assert cells(steps[4]) == ["4", "update-schema", newest, "applies", *(", ".join(after)).split()]
    assert all(len(line) <= 100 for line in status.stdout.splitlines() + plan.stdout.splitlines())
