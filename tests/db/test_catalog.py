"""`observe` without a server: one statement for the catalog, a second only for pending seed rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from migrator.core.online import OnlineProgress, Phase, TableFacts
from migrator.core.sizes import Sizes, TableSize
from migrator.core.state import ColumnInfo, IndexInfo
from migrator.core.vendor import VendorSchema
from migrator.db.catalog import observe, read_table_facts

INDEX = "CREATE INDEX accounts_by_name ON public.accounts USING btree (name)"


def document(version: str | None) -> dict[str, Any]:
    """What the catalog statement returns (json_build_object), for a store of the mini tree."""
    return {
        "access": ["app", "app", "public", 150000, True, True, False],
        "tables": [] if version is None else ["schema_version", "accounts", "meta"],
        "columns": [
            ["accounts.id", "integer", True, None, False],
            ["accounts.name", "text", False, "'x'::text", False],
        ],
        "indexes": [["accounts_by_name", True, INDEX]],
        "functions": [["f", "0f"], ["f", "1a"]],
        "extensions": ["plpgsql"],
        "versions": None if version is None else [["temporal", version], ["temporal_old", "1.0"]],
    }


class Rows:
    def __init__(self, version: str | None, seeds: Sequence[bool] = ()) -> None:
        self.version = version
        self.seeds = seeds
        self.queries: list[str] = []

    def __call__(self, query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.queries.append(query if isinstance(query, str) else repr(query))
        if len(self.queries) == 1:
            return [(document(self.version),)]
        return [tuple(self.seeds)]


def test_a_store_with_no_pending_insert_is_read_in_one_statement(mini_vendor: VendorSchema) -> None:
    rows = Rows("1.2")
    state = observe(rows, "temporal", mini_vendor)
    assert len(rows.queries) == 1
    assert (state.version, state.other_databases) == ("1.2", ("temporal_old",))
    assert state.catalog.columns["accounts.name"] == ColumnInfo("text", False, "'x'::text", False)
    assert state.catalog.indexes == {"accounts_by_name": IndexInfo(True, INDEX)}
    assert state.catalog.functions == {"f": frozenset({"0f", "1a"})}
    assert state.access.server_version_num == 150000


def test_without_definitions_only_presence_is_asked_of_the_server(mini_vendor: VendorSchema) -> None:
    rows = Rows("1.2")
    state = observe(rows, "temporal", mini_vendor, definitions=False)
    assert not any(f in rows.queries[0] for f in ("pg_get_indexdef", "pg_get_expr", "format_type", "prosrc"))
    assert all(f in rows.queries[0] for f in ("indisvalid", "curr_version", "AccessExclusiveLock"))
    assert not state.catalog.definitions
    full = Rows("1.2")
    observe(full, "temporal", mini_vendor)
    assert all(f in full.queries[0] for f in ("pg_get_indexdef", "pg_get_expr", "format_type", "prosrc"))


def test_pending_seed_rows_are_probed_in_one_more_statement(mini_vendor: VendorSchema) -> None:
    rows = Rows("0.0", seeds=[True])
    state = observe(rows, "temporal", mini_vendor)
    assert len(rows.queries) == 2
    assert "54321" in rows.queries[1]
    assert list(state.catalog.rows.values()) == [True]


def test_an_empty_database_has_no_version(mini_vendor: VendorSchema) -> None:
    rows = Rows(None)
    state = observe(rows, "temporal", mini_vendor)
    assert len(rows.queries) == 1  # the seed row's table is not there: nothing to probe
    assert state.version is None
    assert state.other_databases == ()


def test_an_online_rewrite_in_progress_is_read_in_the_same_statement(mini_vendor: VendorSchema) -> None:
    rows = Rows("1.2")
    assert observe(rows, "temporal", mini_vendor).online is None  # the key missing or null: none in progress
    assert "to_regclass('temporal_migrator_online.state')" in rows.queries[0]

    class InProgress(Rows):
        def __call__(self, query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            self.queries.append(str(query))
            return [({**document(self.version), "online": [["accounts", '["1.1", "1.2"]', "swap"]]},)]

    found = InProgress("1.0")
    state = observe(found, "temporal", mini_vendor)
    assert len(found.queries) == 1  # no extra round trip
    assert state.online == OnlineProgress("accounts", ("1.1", "1.2"), Phase.SWAP)


def test_table_facts_are_one_query_for_the_tables_asked_and_none_for_none() -> None:
    asked: list[tuple[str, Sequence[Any]]] = []

    def rows(query: sql.Composable | str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        asked.append((str(query), params))
        return [
            ("runs", ["namespace_id", "run_id"], ["view recent_runs"], ["everything"]),
            ("notes", [], [], ["everything"]),
        ]

    sizes = Sizes({"runs": TableSize(10, 4096), "notes": TableSize(1, None, "pid 7 (x)")}, {}, {})
    assert read_table_facts(rows, (), sizes) == {}
    assert asked == []
    facts = read_table_facts(rows, {"runs", "notes"}, sizes)
    assert [params for _, params in asked] == [(["notes", "runs"],)]
    assert facts["runs"] == TableFacts("runs", 4096, ("namespace_id", "run_id"), ("view recent_runs",), ("everything",))
    assert facts["notes"] == TableFacts("notes", 0, (), (), ("everything",))
