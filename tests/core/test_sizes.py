"""A table another session has locked: its size is unknown, the report names the holder, the guard refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from migrator.core.impact import impact_report, too_large
from migrator.core.sizes import Sizes, TableSize, parse_size
from migrator.source.tree import load_vendor_schema
from tests.conftest import TreeSpec

STORE: TreeSpec = {
    "1.0": "CREATE TABLE visits (id INT PRIMARY KEY, doc JSONB);",
    "1.1": "ALTER TABLE visits ADD COLUMN Tag VARCHAR(255) GENERATED ALWAYS AS (doc->>'Tag') STORED;",
}
LOCKED = Sizes({"visits": TableSize(1000, None, "pid 4711 (psql)")}, {}, {})


def test_a_locked_table_is_reported_with_unknown_size_and_its_holder(tree_writer: Callable[[TreeSpec], Path]) -> None:
    vendor = load_vendor_schema(tree_writer(STORE), "temporal")
    report = impact_report(vendor.versions[1:], LOCKED)
    assert "size unknown: locked by pid 4711 (psql)" in report[0].summary
    statement = report[0].to_dict()["statements"][0]
    assert (statement["bytes"], statement["locked_by"]) == (None, "pid 4711 (psql)")


def test_the_guard_refuses_a_rewrite_of_a_table_whose_size_it_cannot_read(
    tree_writer: Callable[[TreeSpec], Path],
) -> None:
    vendor = load_vendor_schema(tree_writer(STORE), "temporal")
    refusal = too_large(impact_report(vendor.versions[1:], LOCKED), parse_size("100GB"))
    assert refusal is not None
    assert "pid 4711 (psql)" in refusal
    assert too_large(impact_report(vendor.versions[1:], LOCKED), None) is None
