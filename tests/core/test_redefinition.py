"""Versions that redefine an object under its own name: the plan from untouched and from every crash point, the
refusal where two points fit equally, and verification of definitions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.core.planner import Action, Situation, plan
from migrator.core.state import Catalog, ColumnInfo, IndexInfo, State
from migrator.core.vendor import VendorSchema
from migrator.core.verify import verification_problems
from migrator.source.tree import load_vendor_schema
from tests.conftest import TreeSpec

REDEFINING: TreeSpec = {
    "1.0": """
        CREATE TABLE t (a INT, b INT);
        CREATE INDEX ix ON t (a);
        CREATE FUNCTION f() RETURNS INT AS $$ SELECT 1 $$ LANGUAGE sql;
    """,
    "1.1": """
        DROP INDEX ix;
        CREATE INDEX ix ON t (a, b);
    """,
    "1.2": """
        CREATE OR REPLACE FUNCTION f() RETURNS INT AS $$ SELECT 2 $$ LANGUAGE sql;
        CREATE TABLE u (c INT);
    """,
}

# The catalog as PostgreSQL prints it, written by hand (pg_get_indexdef, format_type, md5(prosrc)).
IX_A = IndexInfo(True, "CREATE INDEX ix ON public.t USING btree (a)")
IX_AB = IndexInfo(True, "CREATE INDEX ix ON public.t USING btree (a, b)")
T_COLUMNS = {"t.a": ColumnInfo("integer"), "t.b": ColumnInfo("integer")}


def body(source: str) -> frozenset[str]:
    return frozenset({hashlib.md5(source.encode()).hexdigest()})


def catalog(index: IndexInfo | None, function: str, u: bool = False) -> Catalog:
    return Catalog(
        tables=frozenset({"schema_version", "t"} | ({"u"} if u else set())),
        columns={**T_COLUMNS, **({"u.c": ColumnInfo("integer")} if u else {})},
        indexes={"ix": index} if index else {},
        functions={"f": body(function)},
    )


# After each crash point k of the version: the catalog, and the steps the plan must hold.
V11 = [
    (catalog(IX_A, " SELECT 1 "), [(Action.UPDATE, "1.2", 0)]),
    (
        catalog(None, " SELECT 1 "),
        [(Action.SKIP_STATEMENT, "1.1", 1), (Action.RUN_STATEMENT, "1.1", 2), (Action.RECORD_VERSION, "1.1", 0),
         (Action.UPDATE, "1.2", 0)],
    ),
    (
        catalog(IX_AB, " SELECT 1 "),
        [(Action.SKIP_STATEMENT, "1.1", 1), (Action.SKIP_STATEMENT, "1.1", 2), (Action.RECORD_VERSION, "1.1", 0),
         (Action.UPDATE, "1.2", 0)],
    ),
]  # fmt: skip
V12 = [
    (catalog(IX_AB, " SELECT 1 "), [(Action.UPDATE, "1.2", 0)]),
    (catalog(IX_AB, " SELECT 2 "), [(Action.UPDATE, "1.2", 0)]),  # OR REPLACE re-runs: it never decides k
    (
        catalog(IX_AB, " SELECT 2 ", u=True),
        [(Action.SKIP_STATEMENT, "1.2", 1), (Action.SKIP_STATEMENT, "1.2", 2), (Action.RECORD_VERSION, "1.2", 0)],
    ),
]


@pytest.fixture
def vendor(tree_writer: Callable[[TreeSpec], Path]) -> VendorSchema:
    return load_vendor_schema(tree_writer(REDEFINING), "temporal")


def steps(vendor: VendorSchema, stored: str, found: Catalog) -> list[tuple[Action, str, int]]:
    planned = plan(State("temporal", stored, catalog=found), vendor, vendor.newest)
    assert planned.refusal is None, planned.refusal
    return [(step.action, step.to_dict()["version"], step.to_dict().get("statement", 0)) for step in planned.steps]


@pytest.mark.parametrize(("k", "found", "expected"), [(k, *point) for k, point in enumerate(V11)])
def test_an_index_recreated_with_new_columns_is_planned_from_every_crash_point(
    vendor: VendorSchema, k: int, found: Catalog, expected: list[tuple[Action, str, int]]
) -> None:
    assert steps(vendor, "1.0", found) == expected


@pytest.mark.parametrize(("k", "found", "expected"), [(k, *point) for k, point in enumerate(V12)])
def test_a_function_replaced_with_a_new_body_is_planned_from_every_crash_point(
    vendor: VendorSchema, k: int, found: Catalog, expected: list[tuple[Action, str, int]]
) -> None:
    assert steps(vendor, "1.1", found) == expected


def test_a_definition_no_point_of_the_version_has_is_refused_as_changed_by_hand(vendor: VendorSchema) -> None:
    done = catalog(IX_AB, " SELECT 2 ", u=True)
    found = replace(done, columns={**done.columns, "u.c": ColumnInfo("text")})
    planned = plan(State("temporal", "1.1", catalog=found), vendor, vendor.newest)
    assert planned.situation is Situation.REFUSED
    assert planned.refusal is not None
    assert "matches no point" in planned.refusal
    assert "column u.c: expected present (default none, not_null false, type int4), found present" in planned.refusal


def test_an_index_the_version_drops_may_have_any_definition_before_it(vendor: VendorSchema) -> None:
    # the version drops it first, as the bare tool would: what it was does not matter
    found = catalog(IndexInfo(True, "CREATE UNIQUE INDEX ix ON public.t USING btree (b)"), " SELECT 1 ")
    assert steps(vendor, "1.0", found) == [(Action.UPDATE, "1.2", 0)]


def test_a_version_that_recreates_an_index_as_it_was_is_refused_where_two_points_fit(
    tree_writer: Callable[[TreeSpec], Path],
) -> None:
    same = load_vendor_schema(
        tree_writer(
            {**REDEFINING, "1.1": "DROP INDEX ix; CREATE INDEX ix ON t (a);", "1.2": "CREATE TABLE u (c INT);"}
        ),
        "temporal",
    )
    untouched_or_done = plan(State("temporal", "1.0", catalog=catalog(IX_A, " SELECT 1 ")), same, same.newest)
    assert untouched_or_done.situation is Situation.REFUSED
    assert untouched_or_done.steps == ()
    assert untouched_or_done.refusal is not None
    assert "fits 0 and 2 of the 2 statements of v1.1" in untouched_or_done.refusal
    assert "index ix" in untouched_or_done.refusal
    # between the two statements only one point fits
    half = plan(State("temporal", "1.0", catalog=catalog(None, " SELECT 1 ")), same, same.newest)
    assert half.refusal is None
    assert [step.action for step in half.steps][:2] == [Action.SKIP_STATEMENT, Action.RUN_STATEMENT]


def test_verification_flags_an_old_index_definition_and_an_old_function_body(vendor: VendorSchema) -> None:
    done = catalog(IX_AB, " SELECT 2 ", u=True)
    assert verification_problems(State("temporal", "1.2", catalog=done), vendor, vendor.newest) == []
    stale = catalog(IX_A, " SELECT 1 ", u=True)
    problems = verification_problems(State("temporal", "1.2", catalog=stale), vendor, vendor.newest)
    assert [problem.split(":")[0] for problem in problems] == ["index ix", "function f"]
    assert "found present (definition CREATE INDEX ON t (a))" in problems[0]
