"""The catalog description that stands in for pg_dump on the majors without one must see every kind of change
a broken migration could leave (runs on every major)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from devtools.databases import AppDb, MakeDb
from devtools.pgmajors import catalog_dump
from integration.support.processes import RunMigrator

Conn = psycopg.Connection[tuple[Any, ...]]
CHANGES: dict[str, Callable[[Conn], object]] = {
    "column default": lambda c: c.execute("ALTER TABLE executions_visibility ALTER COLUMN status SET DEFAULT 1"),
    "nullability": lambda c: c.execute("ALTER TABLE executions_visibility ALTER COLUMN memo SET NOT NULL"),
    "column type": lambda c: c.execute("ALTER TABLE executions_visibility ALTER COLUMN workflow_id TYPE text"),
    "dropped index": lambda c: c.execute("DROP INDEX by_temporal_bool_01"),
    "dropped column": lambda c: c.execute("ALTER TABLE executions_visibility DROP COLUMN temporalint02"),
    "extra table": lambda c: c.execute("CREATE TABLE stray (id int)"),
    "dropped function": lambda c: c.execute("DROP FUNCTION convert_ts CASCADE"),
}


def migrated(make_db: MakeDb, run_migrator: RunMigrator) -> AppDb:
    db = make_db()
    assert run_migrator(db, "migrate", "--schema", "visibility").returncode == 0
    return db


def describe(db: AppDb) -> str:
    with db.server.admin_connect(db.name) as conn:
        return catalog_dump(conn)


@pytest.mark.portable
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_catalog_dump_equals_for_equal_schemas_and_sees_each_change(
    change: str, make_db: MakeDb, run_migrator: RunMigrator
) -> None:
    first, second = migrated(make_db, run_migrator), migrated(make_db, run_migrator)
    assert describe(first) == describe(second)
    assert "index CREATE INDEX by_temporal_bool_01 ON public.executions_visibility" in describe(first)
    with second.server.admin_connect(second.name) as conn:
        CHANGES[change](conn)
    assert describe(first) != describe(second)
