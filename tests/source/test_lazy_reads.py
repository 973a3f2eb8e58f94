"""A store at its target reads none of its own SQL files; a plan reads the statements it needs and no more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.ci import unavailable
from devtools.pins import resolve_schema_dir, upgrade_sources
from migrator.core.planner import Policy, Situation, plan
from migrator.core.state import Catalog, State
from migrator.core.vendor import STORES, VendorSchema, VendorVersion, statements_needed
from migrator.db.catalog import observe
from migrator.run.inspect import observe_and_plan
from migrator.source.tree import load_vendor_schema, read_statements, read_vendor_tree
from tests.conftest import MINI_STORE, write_tree

OTHER_FIRST = {"1.0": "CREATE TABLE executions_visibility (a INT);", "1.1": "CREATE TABLE later (a INT);"}


@pytest.fixture
def both_stores(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "schema", "temporal", MINI_STORE)
    return write_tree(root, "visibility", OTHER_FIRST)


@pytest.fixture
def sql_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every SQL file read through `Path.read_bytes` (how the tree reads them)."""
    reads: list[Path] = []
    original = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path.suffix == ".sql":
            reads.append(path)
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return reads


def at(version: str | None, tables: frozenset[str]) -> State:
    return State("temporal", version=version, catalog=Catalog(tables=tables))


def test_a_store_at_its_target_reads_no_sql_file(both_stores: Path, sql_reads: list[Path]) -> None:
    vendor = read_vendor_tree(both_stores, "temporal")
    state = at(vendor.newest.name, tables=frozenset({"schema_version", "accounts"}))
    assert statements_needed(vendor, state.version, vendor.newest, invalid_indexes=False) == []
    assert plan(state, vendor, vendor.newest).situation is Situation.CURRENT
    assert sql_reads == []


@pytest.mark.parametrize("stored", ["1.0", "1.10"], ids=["behind", "ahead"])
def test_the_other_store_is_recognised_from_its_first_version(both_stores: Path, stored: str) -> None:
    """Behind or ahead of the target (the default store's row in the visibility store's database, or the other
    way round), the other store's first version is read, and its tables refuse the plan."""
    vendor = read_vendor_tree(both_stores, "temporal")
    target = vendor.versions[1] if stored == "1.10" else vendor.newest
    read = read_statements(vendor, statements_needed(vendor, stored, target, invalid_indexes=False))
    assert read.foreign_tables() == {"executions_visibility"}
    refused = plan(at(stored, tables=frozenset({"schema_version", "executions_visibility"})), read, target)
    assert refused.refusal is not None
    assert "separate databases" in refused.refusal


def names(versions: list[VendorVersion]) -> list[str]:
    """``store version`` of each (the store is the directory above ``versioned``)."""
    return [f"{item.directory.parts[-3]} {item.name}" for item in versions]


ALL = ["temporal 1.0", "temporal 1.1", "temporal 1.2", "temporal 1.10"]
OTHER = "visibility 1.0"


@pytest.mark.parametrize(
    ("version", "invalid", "expected"),
    [
        ("1.0", False, [*ALL, OTHER]),  # the earlier versions say what came before
        ("1.2", False, [*ALL, OTHER]),
        ("1.10", False, []),
        (None, False, [*ALL, OTHER]),
        ("1.x", False, [*ALL, OTHER]),
        ("1.10", True, ALL),  # at its target: the other store cannot come to share its database by this run
    ],
)
def test_the_statements_a_plan_needs(
    both_stores: Path, version: str | None, invalid: bool, expected: list[str]
) -> None:
    vendor = read_vendor_tree(both_stores, "temporal")
    assert names(statements_needed(vendor, version, vendor.newest, invalid_indexes=invalid)) == expected
    read = read_statements(vendor, statements_needed(vendor, version, vendor.newest, invalid_indexes=invalid))
    assert statements_needed(read, version, read.newest, invalid_indexes=invalid) == []


def test_a_plan_with_unread_statements_fails_loudly(both_stores: Path) -> None:
    vendor = read_vendor_tree(both_stores, "temporal")
    with pytest.raises(AssertionError, match="not read"):
        plan(at("1.0", tables=frozenset({"accounts", "meta"})), vendor, vendor.newest)


def test_reading_statements_gives_what_reading_the_whole_tree_gives(both_stores: Path) -> None:
    whole = load_vendor_schema(both_stores, "temporal")
    lazy = read_vendor_tree(both_stores, "temporal")
    assert lazy.other is not None
    for version in (*lazy.versions, *lazy.other.versions):
        lazy = read_statements(lazy, [version])
    assert lazy == whole


@pytest.mark.parametrize("release", [None, *upgrade_sources()], ids=lambda release: release or "pinned")
@pytest.mark.parametrize("store", STORES)
def test_no_store_creates_a_table_the_other_stores_first_version_creates(release: str | None, store: str) -> None:
    """What recognising the other store by its first version rests on, on every release's tree."""
    root, why = resolve_schema_dir(release)
    if root is None:
        unavailable(why)
    vendor: VendorSchema = load_vendor_schema(root, store)
    assert vendor.foreign_tables()
    assert vendor.foreign_tables().isdisjoint(vendor.created_tables())


class EmptyDatabase:
    """A driver over a database with no tables: counts the observations."""

    def __init__(self) -> None:
        self.observed = 0

    def observe(self, vendor: VendorSchema, *, definitions: bool = True) -> State:
        self.observed += 1

        def rows(query: object, params: object) -> list[tuple[object, ...]]:
            access = ["temporal", "temporal", "public", 150000, True, True, False]
            empty: dict[str, object] = {key: [] for key in ("tables", "columns", "indexes", "functions", "extensions")}
            return [({**empty, "access": access, "versions": None},)]

        return observe(rows, "temporal", vendor, definitions=definitions)


def test_the_shell_reads_what_a_fresh_install_needs_then_observes_again(both_stores: Path) -> None:
    database = EmptyDatabase()
    vendor = read_vendor_tree(both_stores, "temporal")
    driver: Any = database
    _, planned = observe_and_plan(driver, vendor, vendor.newest, Policy())
    assert planned.situation is Situation.EMPTY
    assert [item.name for item in planned.pending] == ["1.0", "1.1", "1.2", "1.10"]
    assert all(item.read_statements is not None for item in planned.pending)
    assert database.observed == 2
