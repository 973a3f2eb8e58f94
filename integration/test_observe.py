"""The catalog read on a real server: the presence-only read a no-op makes sees what the full read sees of what
it reads (tables, index names and validity, the version row, locked tables), so planning a store at its target
from it decides what planning from the full read decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.databases import AppDb
from integration.support.scenarios import TARGETS, tool_to
from migrator.cli.options import build_settings
from migrator.core.planner import plan, resolve_target
from migrator.db.driver import Driver
from migrator.source.tree import load_vendor_schema

pytestmark = pytest.mark.portable


def test_the_presence_read_agrees_with_the_full_read_on_what_it_reads(app_db: AppDb, schema_dir: Path) -> None:
    tool_to(app_db, schema_dir, "visibility", TARGETS["visibility"])
    with app_db.connect() as conn:  # an index a crashed CREATE INDEX CONCURRENTLY would leave, and rows
        conn.execute("CREATE TABLE app_notes (k int, v text)")
        conn.execute("INSERT INTO app_notes SELECT i % 10, 'x' FROM generate_series(1, 100) i")
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY app_notes_k ON app_notes (k)")
    vendor = load_vendor_schema(schema_dir, "visibility")
    target = resolve_target(vendor, None)
    settings = build_settings("status", {}, app_db.env())

    with Driver.open(settings) as driver, app_db.holding("LOCK TABLE app_notes IN ACCESS EXCLUSIVE MODE"):
        full, presence = driver.observe(vendor), driver.observe(vendor, definitions=False)
    assert (presence.catalog.definitions, full.catalog.definitions) == (False, True)
    assert presence.catalog.tables == full.catalog.tables
    assert {name: index.valid for name, index in presence.catalog.indexes.items()} == {
        name: index.valid for name, index in full.catalog.indexes.items()
    }
    assert presence.catalog.invalid_indexes == full.catalog.invalid_indexes == ("app_notes_k",)
    assert presence.catalog.locked == full.catalog.locked
    assert "app_notes" in presence.catalog.locked
    assert (presence.version, presence.access, presence.online) == (full.version, full.access, full.online)
    assert (bool(full.catalog.columns), presence.catalog.columns) == (True, {})
    with pytest.raises(ValueError, match="definitions"):  # an invalid index is dropped from definitions only
        plan(presence, vendor, target)
    with app_db.connect() as conn:
        conn.execute("DROP INDEX app_notes_k")
    with Driver.open(settings) as driver:
        full, presence = driver.observe(vendor), driver.observe(vendor, definitions=False)
    assert plan(presence, vendor, target).to_dict() == plan(full, vendor, target).to_dict()
