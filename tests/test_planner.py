"""One test per row of the states table (README, "States and decisions")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.version import Version

from migrator.errors import UsageError
from migrator.planner import Action, Situation, access_problem, plan, resolve_target
from migrator.state import Access, Catalog, ColumnInfo, State
from migrator.vendor import VendorSchema, load_vendor_schema

from .conftest import TreeSpec
from .test_repair import catalog_after


def actions(vendor: VendorSchema, state: State, target: str = "1.10") -> list[tuple[str, str]]:
    result = plan(state, vendor, resolve_target(vendor, Version(target)))
    assert result.refusal is None, result.refusal
    return [(step.action.value, step.version) for step in result.steps]


def at(version: str | None, catalog: Catalog | None = None, access: Access | None = None) -> State:
    return State(
        database="temporal",
        version_table=version is not None,
        version=version,
        catalog=catalog or Catalog(),
        access=access or Access(),
    )


def complete(vendor: VendorSchema) -> Catalog:
    """The mini store after v1.2: what a database at 1.2 looks like."""
    return catalog_after(vendor, "1.2", 4)


def test_empty_database_is_set_up_then_updated(mini_vendor: VendorSchema) -> None:
    assert actions(mini_vendor, at(None)) == [("setup-schema", "0.0"), ("update-schema", "1.10")]
    assert plan(at(None), mini_vendor, mini_vendor.newest).situation is Situation.EMPTY


def test_version_table_without_row_and_without_tables_is_set_up(mini_vendor: VendorSchema) -> None:
    state = State(database="temporal", version_table=True, catalog=Catalog(tables=frozenset({"schema_version"})))
    assert actions(mini_vendor, state) == [("setup-schema", "0.0"), ("update-schema", "1.10")]


def test_setup_done_no_tables_goes_straight_to_update(mini_vendor: VendorSchema) -> None:
    assert actions(mini_vendor, at("0.0")) == [("update-schema", "1.10")]
    assert plan(at("0.0"), mini_vendor, mini_vendor.newest).situation is Situation.SET_UP


def test_behind_with_untouched_first_pending_version_updates(mini_vendor: VendorSchema) -> None:
    state = at("1.1", catalog_after(mini_vendor, "1.2", 0))
    assert actions(mini_vendor, state) == [("update-schema", "1.10")]


def test_partial_first_pending_version_is_repaired_then_updated(mini_vendor: VendorSchema) -> None:
    state = at("0.0", catalog_after(mini_vendor, "1.0", 3))
    result = plan(state, mini_vendor, mini_vendor.newest)
    assert result.situation is Situation.PARTIAL
    assert [(s.action, s.version, s.applied, s.total) for s in result.steps] == [
        (Action.REPAIR, "1.0", 3, 5),
        (Action.UPDATE, "1.10", 0, 0),
    ]


def test_complete_but_unrecorded_version_is_only_recorded(mini_vendor: VendorSchema) -> None:
    state = at("1.1", complete(mini_vendor))
    result = plan(state, mini_vendor, resolve_target(mini_vendor, Version("1.2")))
    assert [(s.action, s.applied, s.total) for s in result.steps] == [(Action.REPAIR, 4, 4)]


def test_at_target_does_nothing(mini_vendor: VendorSchema) -> None:
    result = plan(at("1.10"), mini_vendor, mini_vendor.newest)
    assert (result.situation, result.steps) == (Situation.CURRENT, ())


def test_ahead_of_target_never_downgrades(mini_vendor: VendorSchema) -> None:
    result = plan(at("1.10"), mini_vendor, resolve_target(mini_vendor, Version("1.2")))
    assert (result.situation, result.steps) == (Situation.AHEAD, ())
    assert "never downgrading" in result.warnings[0]


def test_versions_compare_as_numbers_not_text(mini_vendor: VendorSchema) -> None:
    # "1.10" < "1.2" as text; as versions 1.2 is behind 1.10 and 1.10 is pending.
    result = plan(at("1.2", complete(mini_vendor)), mini_vendor, mini_vendor.newest)
    assert [item.name for item in result.pending] == ["1.10"]
    assert result.situation is Situation.BEHIND


def test_vendor_tables_without_version_row_are_refused(mini_vendor: VendorSchema) -> None:
    state = State(
        database="temporal", version_table=True, other_databases=("temporal_old",), catalog=complete(mini_vendor)
    )
    result = plan(state, mini_vendor, mini_vendor.newest)
    assert result.situation is Situation.REFUSED
    assert result.steps == ()
    assert result.refusal is not None
    assert "temporal_old" in result.refusal
    assert "--database" in result.refusal


@pytest.mark.parametrize("stored", ["banana", "1.x", ""])
def test_unparseable_version_is_refused(mini_vendor: VendorSchema, stored: str) -> None:
    result = plan(at(stored), mini_vendor, mini_vendor.newest)
    assert result.refusal is not None
    assert "not a version" in result.refusal


def test_version_missing_from_the_vendor_tree_is_refused(mini_vendor: VendorSchema) -> None:
    result = plan(at("1.5"), mini_vendor, mini_vendor.newest)
    assert result.refusal is not None
    assert "not a version of the vendor tree" in result.refusal


def test_catalog_matching_no_crash_point_is_refused(mini_vendor: VendorSchema) -> None:
    hand_made = Catalog(
        tables=frozenset({"accounts"}),
        columns={"accounts.id": ColumnInfo(True, False)},
        indexes={"accounts_by_name": True},
    )
    result = plan(at("0.0", hand_made), mini_vendor, mini_vendor.newest)
    assert result.refusal is not None
    assert "matches no point" in result.refusal


def test_target_outside_the_vendor_tree_is_a_usage_error(mini_vendor: VendorSchema) -> None:
    with pytest.raises(UsageError, match="not in the vendor tree"):
        resolve_target(mini_vendor, Version("1.3"))


def test_preflight_names_the_fix_for_public_schema_privilege(mini_vendor: VendorSchema) -> None:
    state = at(None, access=Access(user="temporal", database_owner="dbuser", can_create_in_schema=False))
    problem = access_problem(state, plan(state, mini_vendor, mini_vendor.newest))
    assert problem is not None
    assert "GRANT CREATE ON SCHEMA public TO temporal" in problem
    assert "dbuser" in problem


def test_preflight_is_silent_when_nothing_is_to_be_done(mini_vendor: VendorSchema) -> None:
    state = at("1.10", access=Access(can_create_in_schema=False))
    assert access_problem(state, plan(state, mini_vendor, mini_vendor.newest)) is None


def test_preflight_refuses_old_servers(mini_vendor: VendorSchema) -> None:
    state = at(None, access=Access(server_version_num=110000))
    problem = access_problem(state, plan(state, mini_vendor, mini_vendor.newest))
    assert problem is not None
    assert "older than 12" in problem


def test_preflight_checks_database_create_for_a_missing_extension(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE EXTENSION IF NOT EXISTS btree_gin; CREATE TABLE v (a INT);"})
    vendor = load_vendor_schema(root, "temporal")
    state = at(None, access=Access(can_create_in_database=False))
    problem = access_problem(state, plan(state, vendor, vendor.newest))
    assert problem is not None
    assert "GRANT CREATE ON DATABASE temporal" in problem
    installed = replace(state, catalog=Catalog(extensions=frozenset({"btree_gin"})))
    assert access_problem(installed, plan(installed, vendor, vendor.newest)) is None
