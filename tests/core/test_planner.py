"""One test per row of the states table (README, "States and decisions")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.version import Version

from devtools.ci import unavailable
from devtools.pins import gomodcache
from migrator.core.planner import (
    Action,
    Outcome,
    Policy,
    RunStatement,
    Situation,
    Verdict,
    access_problem,
    plan,
    resolve_target,
)
from migrator.core.sizes import Sizes, TableSize, parse_size
from migrator.core.state import Access, Catalog, ColumnInfo, IndexInfo, State
from migrator.core.statements import Kind, ObjectRef
from migrator.core.vendor import VendorSchema, definitions_needed
from migrator.core.verify import expected_objects, verification_problems
from migrator.errors import AccessError, UnsafeStateError, UsageError
from migrator.source.tree import load_vendor_schema
from tests.conftest import TreeSpec, write_tree

from .test_repair import BY_NAME, BY_NAME_ENCODING, catalog_after, catalog_of, invalid

APP_INDEX = "CREATE UNIQUE INDEX app_own_idx ON public.app_notes USING btree (k)"
EXPECTED_INDEX = "definition CREATE INDEX ON accounts (name, encoding)"


def actions(vendor: VendorSchema, state: State, target: str = "1.10") -> list[tuple[str, str]]:
    result = plan(state, vendor, resolve_target(vendor, Version(target)))
    assert result.refusal is None, result.refusal
    return [(step.to_dict()["action"], step.to_dict()["version"]) for step in result.steps]


def at(version: str | None, catalog: Catalog | None = None, access: Access | None = None) -> State:
    return State(
        database="temporal",
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
    state = State(database="temporal", catalog=Catalog(tables=frozenset({"schema_version"})))
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
    assert [(s.action, s.to_dict()["version"], s.to_dict().get("statement", 0)) for s in result.steps] == [
        (Action.SKIP_STATEMENT, "1.0", 1),
        (Action.SKIP_STATEMENT, "1.0", 2),
        (Action.SKIP_STATEMENT, "1.0", 3),
        (Action.RUN_STATEMENT, "1.0", 4),
        (Action.RUN_STATEMENT, "1.0", 5),
        (Action.RECORD_VERSION, "1.0", 0),
        (Action.UPDATE, "1.10", 0),
    ]
    run = result.steps[3]
    assert isinstance(run, RunStatement)
    assert run.text == mini_vendor.versions[0].statements[3].text  # verbatim, as the vendor wrote it
    assert run.to_dict() == {
        "action": "run-statement",
        "version": "1.0",
        "statement": 4,
        "of": 5,
        "text": "CREATE TABLE old_tasks (id INT PRIMARY KEY);",
    }
    assert result.steps[5].to_dict() == {"action": "record-version", "version": "1.0", "old_version": "0.0"}


def test_complete_but_unrecorded_version_is_only_recorded(mini_vendor: VendorSchema) -> None:
    state = at("1.1", complete(mini_vendor))
    result = plan(state, mini_vendor, resolve_target(mini_vendor, Version("1.2")))
    assert [s.action for s in result.steps] == [Action.SKIP_STATEMENT] * 4 + [Action.RECORD_VERSION]


def test_invalid_vendor_index_is_dropped_in_the_plan_before_its_rebuild(mini_vendor: VendorSchema) -> None:
    done = catalog_after(mini_vendor, "1.2", 4)
    crashed = replace(done, indexes={"accounts_by_name": invalid(BY_NAME_ENCODING), "app_own_idx": invalid(APP_INDEX)})
    result = plan(at("1.1", crashed), mini_vendor, resolve_target(mini_vendor, Version("1.2")))
    assert result.steps[0].to_dict() == {"action": "drop-invalid-index", "version": "1.2", "index": "accounts_by_name"}
    assert [s.action for s in result.steps].count(Action.DROP_INVALID_INDEX) == 1  # never the app's own index
    assert result.steps[-2].to_dict()["statement"] == 4
    assert result.steps[-2].action is Action.RUN_STATEMENT


def test_an_invalid_index_that_is_not_the_vendors_is_only_a_warning(mini_vendor: VendorSchema) -> None:
    catalog = replace(
        complete(mini_vendor), indexes={"accounts_by_name": BY_NAME_ENCODING, "app_notes_k": invalid(APP_INDEX)}
    )
    result = plan(at("1.10", catalog), mini_vendor, mini_vendor.newest)
    assert (result.situation, result.steps, result.refusal) == (Situation.CURRENT, (), None)
    assert "app_notes_k" in result.warnings[0]


def test_unrecognised_statement_refuses_a_repair_but_not_an_update(tree_writer: Callable[[TreeSpec], Path]) -> None:
    vendor = load_vendor_schema(
        tree_writer({"1.0": "CREATE TABLE a (x INT);", "1.1": "CREATE TABLE b (x INT); ALTER TABLE a RENAME x TO y;"}),
        "temporal",
    )
    untouched = Catalog(tables=frozenset({"a"}), columns={"a.x": ColumnInfo("integer")})
    assert actions(vendor, at("1.0", untouched), "1.1") == [("update-schema", "1.1")]
    half = replace(untouched, tables=frozenset({"a", "b"}), columns={**untouched.columns, "b.x": ColumnInfo("integer")})
    result = plan(at("1.0", half), vendor, vendor.newest)
    assert result.refusal is not None
    assert "ALTER TABLE a RENAME x TO y" in result.refusal
    assert result.steps == ()


def test_if_not_exists_statements_do_not_decide_how_far_a_run_got(tree_writer: Callable[[TreeSpec], Path]) -> None:
    # An administrator created the extension beforehand, as the access message tells them to: not "partial".
    vendor = load_vendor_schema(
        tree_writer(
            {
                "1.0": "CREATE TABLE a (x INT);",
                "1.1": "CREATE EXTENSION IF NOT EXISTS btree_gin; CREATE TABLE b (x INT);",
            }
        ),
        "temporal",
    )
    before = Catalog(tables=frozenset({"a"}), columns={"a.x": ColumnInfo("integer")})
    assert actions(vendor, at("1.0", replace(before, extensions=frozenset({"btree_gin"}))), "1.1") == [
        ("update-schema", "1.1")
    ]
    assert plan(at("1.0", before), vendor, vendor.newest).situation is Situation.BEHIND


def test_both_stores_in_one_database_are_refused_in_either_order(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "schema", "temporal", {"1.0": "CREATE TABLE executions (a INT);"})
    write_tree(root, "visibility", {"1.0": "CREATE TABLE executions_visibility (a INT);"})
    for store, other_table, version in (
        ("visibility", "executions", "1.0"),
        ("temporal", "executions_visibility", "1.0"),
    ):
        vendor = load_vendor_schema(root, store)
        state = at(version, Catalog(tables=frozenset({other_table, "schema_version"})))
        result = plan(state, vendor, vendor.newest)
        assert result.refusal is not None
        assert other_table in result.refusal
        assert "separate databases" in result.refusal


def test_at_target_does_nothing(mini_vendor: VendorSchema) -> None:
    result = plan(at("1.10"), mini_vendor, mini_vendor.newest)
    assert (result.situation, result.steps) == (Situation.CURRENT, ())


def test_pending_versions_are_never_planned_from_a_catalog_read_without_definitions(mini_vendor: VendorSchema) -> None:
    """Without definitions a partly applied version would look untouched (no column, no index definition)."""
    presence = replace(catalog_after(mini_vendor, "1.2", 0), columns={}, definitions=False)
    assert plan(at("1.10", presence), mini_vendor, mini_vendor.newest).situation is Situation.CURRENT
    with pytest.raises(ValueError, match="needs the catalog's definitions"):
        plan(at("1.1", presence), mini_vendor, mini_vendor.newest)
    with pytest.raises(ValueError, match="read without definitions"):
        presence.seen(ObjectRef(Kind.INDEX, "accounts_by_name"))
    assert presence.seen(ObjectRef(Kind.TABLE, "accounts")).present


@pytest.mark.parametrize(
    ("version", "invalid", "needed"),
    [("1.10", False, False), ("1.10", True, True), ("1.2", False, True), ("1.11", False, False),
     (None, False, False), ("x", False, False)],
)  # fmt: skip
def test_definitions_are_read_for_pending_versions_and_invalid_indexes_only(
    mini_vendor: VendorSchema, version: str | None, invalid: bool, needed: bool
) -> None:
    assert definitions_needed(version, mini_vendor.newest, invalid_indexes=invalid) is needed


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
    state = State(database="temporal", other_databases=("temporal_old",), catalog=complete(mini_vendor))
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
        columns={"accounts.id": ColumnInfo("integer", True)},
        indexes={"accounts_by_name": BY_NAME},
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
    assert 'GRANT CREATE ON SCHEMA "public" TO "temporal"' in problem
    assert "dbuser" in problem


def test_preflight_is_silent_when_nothing_is_to_be_done(mini_vendor: VendorSchema) -> None:
    state = at("1.10", access=Access(can_create_in_schema=False))
    assert access_problem(state, plan(state, mini_vendor, mini_vendor.newest)) is None


@pytest.mark.parametrize("server_version_num", [110022, 120022])
def test_preflight_refuses_servers_before_13(mini_vendor: VendorSchema, server_version_num: int) -> None:
    state = at(None, access=Access(server_version_num=server_version_num))
    problem = access_problem(state, plan(state, mini_vendor, mini_vendor.newest))
    assert problem is not None
    assert "older than 13" in problem


def test_preflight_accepts_13(mini_vendor: VendorSchema) -> None:
    state = at(None, access=Access(server_version_num=130023))
    assert access_problem(state, plan(state, mini_vendor, mini_vendor.newest)) is None


def test_preflight_checks_database_create_for_a_missing_extension(tree_writer: Callable[[TreeSpec], Path]) -> None:
    root = tree_writer({"1.0": "CREATE EXTENSION IF NOT EXISTS btree_gin; CREATE TABLE v (a INT);"})
    vendor = load_vendor_schema(root, "temporal")
    state = at(None, access=Access(can_create_in_database=False))
    problem = access_problem(state, plan(state, vendor, vendor.newest))
    assert problem is not None
    assert 'GRANT CREATE ON DATABASE "temporal"' in problem
    installed = replace(state, catalog=Catalog(extensions=frozenset({"btree_gin"})))
    assert access_problem(installed, plan(installed, vendor, vendor.newest)) is None


def test_grant_snippets_quote_identifiers_so_they_run_as_printed(tree_writer: Callable[[TreeSpec], Path]) -> None:
    vendor = load_vendor_schema(tree_writer({"1.0": "DO $$ BEGIN CREATE EXTENSION btree_gin; END $$;"}), "temporal")
    state = replace(at(None, access=Access(user="app-user", can_create_in_database=False)), database="Temporal-Dev")
    problem = access_problem(state, plan(state, vendor, vendor.newest))
    assert problem is not None
    assert 'GRANT CREATE ON DATABASE "Temporal-Dev" TO "app-user"' in problem
    assert 'CREATE EXTENSION "btree_gin"' in problem  # found inside the DO block


def test_verification_names_every_object_a_clean_install_has(mini_vendor: VendorSchema) -> None:
    only_version_row = at("1.10", Catalog(tables=frozenset({"schema_version"})))
    problems = verification_problems(only_version_row, mini_vendor, mini_vendor.newest)
    assert "table accounts: expected present, found absent" in problems
    assert "table old_tasks: expected absent, found present" not in problems
    done = complete(mini_vendor)
    crashed = replace(
        done,
        tables=done.tables | {"later"},
        columns={**done.columns, "later.id": ColumnInfo("integer")},
        indexes={"accounts_by_name": invalid(BY_NAME_ENCODING)},
    )
    assert verification_problems(at("1.10", crashed), mini_vendor, mini_vendor.newest) == [
        f"index accounts_by_name: expected present ({EXPECTED_INDEX}), found INVALID"
    ]


def _release_tree(release: str) -> Path:
    """A released vendor tree from the Go module cache (the lead's cache builds fetch them)."""
    modcache = gomodcache()
    root = modcache / "go.temporal.io" / f"server@{release}" / "schema" if modcache else None
    if root is None or not (root / "postgresql" / "v12").is_dir():
        unavailable(f"Temporal {release} schema tree not in GOMODCACHE ({root}); scripts/build-tool.sh {release}")
    return root


def _installed(vendor: VendorSchema, version: str) -> Catalog:
    """The catalog a clean install of ``vendor`` up to ``version`` leaves: the last effect on every object."""
    return catalog_of(expected_objects(vendor, resolve_target(vendor, Version(version))))


def test_a_store_that_ran_the_per_version_files_is_updated_by_the_combined_v1_13() -> None:
    # v1.30.4 ran visibility v1.10-v1.12 one file each; v1.32.2 has emptied them into one v1.13 file of
    # IF NOT EXISTS statements. The bare tool finishes such a store: so must we, without a repair.
    older = load_vendor_schema(_release_tree("v1.30.4"), "visibility")
    newer = load_vendor_schema(_release_tree("v1.32.2"), "visibility")
    state = at("1.12", _installed(older, "1.12"))
    result = plan(state, newer, newer.newest)
    assert result.refusal is None
    assert result.situation is Situation.BEHIND
    assert [step.to_dict() for step in result.steps] == [{"action": "update-schema", "version": newer.newest.name}]


def test_pre_installed_extension_does_not_make_a_real_store_partial() -> None:
    vendor = load_vendor_schema(_release_tree("v1.32.2"), "visibility")
    creates = next(v for v in vendor.versions for s in v.statements for e in s.effects if e.ref.kind is Kind.EXTENSION)
    previous = vendor.versions[vendor.versions.index(creates) - 1]
    catalog = _installed(vendor, previous.name)
    state = at(previous.name, replace(catalog, extensions=catalog.extensions | {"btree_gin"}))
    result = plan(state, vendor, vendor.newest)
    assert result.situation is Situation.BEHIND
    assert [step.action for step in result.steps] == [Action.UPDATE]


# -- the verdict: refused, blocked or ok, with the exit code migrate (and plan) stop with -------------------

ONE_TABLE = Sizes({"accounts": TableSize(1_000, 5 * 1024**2)}, {}, {"accounts.name": "character varying(16)"})


def test_a_refusal_is_the_verdict_with_exit_6(mini_vendor: VendorSchema) -> None:
    state = at("not-a-version", Catalog(tables=frozenset({"schema_version", "accounts"})))
    verdict = plan(state, mini_vendor, mini_vendor.newest).verdict
    assert (verdict.outcome, verdict.status) == (Outcome.REFUSED, 6)
    assert isinstance(verdict.error(), UnsafeStateError)
    assert "not a version" in str(verdict.error())


def test_the_preflight_blocks_with_exit_4_and_only_when_there_is_ddl(mini_vendor: VendorSchema) -> None:
    denied = Access(can_create_in_schema=False)
    blocked = plan(at(None, access=denied), mini_vendor, mini_vendor.newest)
    assert (blocked.verdict.outcome, blocked.verdict.status) == (Outcome.BLOCKED, 4)
    assert isinstance(blocked.verdict.error(), AccessError)
    assert blocked.blocked is not None
    assert "GRANT CREATE ON SCHEMA" in blocked.blocked
    current = plan(at("1.10", complete(mini_vendor), access=denied), mini_vendor, mini_vendor.newest)
    assert (current.verdict, current.blocked, current.verdict.error()) == (Verdict(), None, None)


@pytest.mark.parametrize(("limit", "blocked"), [("1MB", True), ("10MB", False)])
def test_the_rewrite_guard_blocks_with_exit_6_from_the_sizes_it_is_given(
    mini_vendor: VendorSchema, limit: str, blocked: bool
) -> None:
    # v1.2 rebuilds accounts_by_name with CREATE INDEX (SHARE: writes stop while it scans); accounts is 5 MB.
    state = at("1.0", catalog_after(mini_vendor, "1.1", 0))
    result = plan(state, mini_vendor, mini_vendor.newest, Policy(parse_size(limit)), ONE_TABLE)
    heavy = [item for version in result.impact for item in version.statements if item.heavy]
    assert heavy, "the mini store must have a statement the guard looks at"
    if blocked:
        assert (result.verdict.outcome, result.verdict.status) == (Outcome.BLOCKED, 6)
        assert isinstance(result.verdict.error(), UnsafeStateError)
        assert result.blocked is not None
        assert f"larger than --max-rewrite-size {limit[:-2]} MB" in result.blocked
    else:
        assert result.verdict.outcome is Outcome.OK


def test_the_guard_without_sizes_is_a_programming_error_not_a_pass(mini_vendor: VendorSchema) -> None:
    with pytest.raises(ValueError, match="needs the catalog's sizes"):
        plan(at("1.0", catalog_after(mini_vendor, "1.1", 0)), mini_vendor, mini_vendor.newest, Policy(1))
    current = plan(at("1.10", complete(mini_vendor)), mini_vendor, mini_vendor.newest, Policy(1))
    assert current.verdict.outcome is Outcome.OK  # nothing pending: nothing to guard


def test_a_refusal_wins_over_a_block(mini_vendor: VendorSchema) -> None:
    state = at("1.7", access=Access(can_create_in_schema=False))
    assert plan(state, mini_vendor, mini_vendor.newest).verdict.outcome is Outcome.REFUSED


def test_an_absent_database_is_created_then_set_up_and_updated(mini_vendor: VendorSchema) -> None:
    state = State("Temporal-Dev", access=Access(user="app", can_create_database=True), exists=False)
    result = plan(state, mini_vendor, mini_vendor.newest)
    assert result.situation is Situation.ABSENT
    assert [step.to_dict() for step in result.steps] == [
        {"action": "create-database", "database": "Temporal-Dev"},
        {"action": "setup-schema", "version": "0.0"},
        {"action": "update-schema", "version": "1.10"},
    ]
    assert [version.name for version in result.pending] == ["1.0", "1.1", "1.2", "1.10"]
    assert result.verdict.outcome is Outcome.OK


def test_an_absent_database_without_createdb_blocks_with_exit_4_and_the_statements(mini_vendor: VendorSchema) -> None:
    state = State("Temporal-Dev", access=Access(user="app"), exists=False)
    verdict = plan(state, mini_vendor, mini_vendor.newest).verdict
    assert (verdict.outcome, verdict.status) == (Outcome.BLOCKED, 4)
    assert verdict.reason is not None
    assert 'CREATE DATABASE "Temporal-Dev" OWNER "app"' in verdict.reason
    assert 'ALTER ROLE "app" CREATEDB' in verdict.reason


def test_a_locked_tables_definitions_fit_any_expectation_and_the_plan_says_so(mini_vendor: VendorSchema) -> None:
    """Another session holds accounts locked: its column's default and its index's definition were not read
    (reading them would queue behind the lock). They fit any expectation, and the plan warns that it compared
    them by presence only."""
    found = Catalog(
        tables=frozenset({"accounts"}),
        columns={"accounts.name": ColumnInfo("text", default="'read'")},
        indexes={"accounts_by_name": IndexInfo(True, "", known=False)},
        locked={"accounts": "pid 4242 (analytics)"},
    )
    name, index = ObjectRef(Kind.COLUMN, "accounts.name"), ObjectRef(Kind.INDEX, "accounts_by_name")
    assert found.seen(name).fits(True, {"type": "int4", "default": "'other'"})
    assert found.seen(index).fits(True, {"table": "accounts", "keys": "(a, b)"})
    assert not replace(found, locked={}).seen(name).fits(True, {"type": "int4", "default": "'other'"})
    assert not found.seen(name).fits(False, {})  # presence still counts
    result = plan(at("1.2", replace(complete(mini_vendor), locked=found.locked)), mini_vendor, mini_vendor.newest)
    assert [step.to_dict()["action"] for step in result.steps] == ["update-schema"]
    assert any("accounts by pid 4242 (analytics)" in warning for warning in result.warnings)
