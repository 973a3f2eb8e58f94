"""`observe` without a server: one statement for the catalog, a second only for pending seed rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from migrator.core.state import ColumnInfo, IndexInfo
from migrator.core.vendor import VendorSchema
from migrator.db.catalog import observe

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
