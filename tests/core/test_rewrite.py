"""Online or plain: every branch of the decision, on a synthetic tree and on the pinned releases' visibility
trees (`migrator.core.rewrite`, `migrator.core.planner`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from migrator.core.online import OnlineProgress, Phase, TableFacts
from migrator.core.planner import (
    BuildIndexConcurrently,
    OnlineRewrite,
    Outcome,
    Plan,
    Policy,
    Situation,
    facts_needed,
    plan,
    resolve_target,
)
from migrator.core.rewrite import REWRITE_RATE, RewriteMode, Route, estimate_stall, wants_online
from migrator.core.sizes import Sizes, TableSize, parse_size
from migrator.core.state import Access, ColumnInfo, State
from migrator.core.vendor import VendorSchema
from migrator.errors import UnsafeStateError
from migrator.source.tree import load_vendor_schema
from tests.conftest import TreeSpec, write_tree

from .test_planner import _installed, _release_tree, at

TREE: TreeSpec = {
    "1.0": """
        CREATE TABLE runs (id INT PRIMARY KEY, payload TEXT);
        CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);
    """,
    "1.1": "CREATE INDEX runs_by_payload ON runs (payload);",  # a plain index build on columns that exist
    "1.2": """
        ALTER TABLE runs ADD COLUMN size INT GENERATED ALWAYS AS (length(payload)) STORED;
        DO $$ BEGIN PERFORM 1; END $$;
        CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_by_size ON runs (size);
        ALTER TABLE notes ADD COLUMN kind TEXT;
    """,
    "1.3": "ALTER TABLE runs ADD COLUMN twice INT GENERATED ALWAYS AS (id * 2) STORED;",
    "1.4": "ALTER TABLE notes ADD COLUMN tag TEXT;",  # catalog only: ends the group
    "1.5": "ALTER TABLE runs ADD COLUMN thrice INT GENERATED ALWAYS AS (id * 3) STORED;",
}
GB = 1024**3
AUTO = Policy()
KEYED = TableFacts("runs", GB, ("id",), (), ())


@pytest.fixture
def vendor(tmp_path: Path) -> VendorSchema:
    return load_vendor_schema(write_tree(tmp_path, "temporal", TREE), "temporal")


def sizes(runs: int | None = GB) -> Sizes:
    return Sizes({"runs": TableSize(1000, runs), "notes": TableSize(10, 8192)}, {}, {})


def decide(
    vendor: VendorSchema,
    policy: Policy = AUTO,
    *,
    state: State | None = None,
    runs: int | None = GB,
    facts: TableFacts = KEYED,
    target: str = "1.5",
) -> Plan:
    state = state or at("1.0", _installed(vendor, "1.0"))
    table_sizes = sizes(runs)
    wanted = facts_needed(plan(state, vendor, resolve_target(vendor, Version(target))), table_sizes)
    found = {name: replace(facts, table=name) for name in wanted}
    return plan(state, vendor, resolve_target(vendor, Version(target)), policy, table_sizes, facts=found)


def shape(planned: Plan) -> list[tuple[Any, ...]]:
    """Each step as (action, version(s) or table, statement number): the plan's program at a glance."""
    found: list[tuple[Any, ...]] = []
    for step in planned.steps:
        fields = step.to_dict()
        if isinstance(step, OnlineRewrite):
            found.append((fields["action"], step.table, step.versions))
        else:
            found.append((fields["action"], fields.get("version"), fields.get("statement")))
    return found


ONLINE_PROGRAM = [
    ("build-index-concurrently", "1.1", None),
    ("update-schema", "1.1", None),
    ("online-rewrite", "runs", ("1.2", "1.3")),
    ("skip-statement", "1.2", 1),
    ("run-statement", "1.2", 2),  # the DO block runs after the swap
    ("skip-statement", "1.2", 3),
    ("run-statement", "1.2", 4),  # another table's statement
    ("record-version", "1.2", None),
    ("skip-statement", "1.3", 1),
    ("record-version", "1.3", None),
    ("update-schema", "1.4", None),
    ("online-rewrite", "runs", ("1.5",)),
    ("skip-statement", "1.5", 1),
    ("record-version", "1.5", None),
]


def test_the_estimate_is_the_total_size_at_the_documented_rate() -> None:
    assert estimate_stall(50 * REWRITE_RATE) == 50
    assert estimate_stall(None) is None
    assert REWRITE_RATE < 27 * 1024**2  # below the slowest rate measured: the estimate errs long
    assert wants_online(2 * REWRITE_RATE, RewriteMode.AUTO, 1.0)
    assert not wants_online(REWRITE_RATE // 2, RewriteMode.AUTO, 1.0)
    assert wants_online(None, RewriteMode.AUTO, 1.0)  # unknown size: taken as large
    assert wants_online(0, RewriteMode.ONLINE, 1.0)
    assert not wants_online(100 * GB, RewriteMode.PLAIN, 1.0)


def test_auto_takes_a_large_table_online_in_groups_of_consecutive_versions(vendor: VendorSchema) -> None:
    planned = decide(vendor)
    assert planned.verdict.outcome is Outcome.OK
    assert shape(planned) == ONLINE_PROGRAM
    rewrite = planned.steps[2]
    assert isinstance(rewrite, OnlineRewrite)
    assert [" ".join(text.split()) for text in rewrite.statements] == [
        "ALTER TABLE runs ADD COLUMN size INT GENERATED ALWAYS AS (length(payload)) STORED;",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_by_size ON runs (size);",
        "ALTER TABLE runs ADD COLUMN twice INT GENERATED ALWAYS AS (id * 2) STORED;",
    ]
    assert "1 GB, a plain rewrite stalls it about 41.0 s" in rewrite.reason
    assert "> --max-stall 1 s" in rewrite.reason
    build = planned.steps[0]
    assert isinstance(build, BuildIndexConcurrently)
    assert (build.table, build.index) == ("runs", "runs_by_payload")
    assert build.text == "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_by_payload ON runs (payload)"
    paths = [(item.path, item.versions, item.extra_disk) for item in planned.rewrites]
    assert paths == [
        (Route.CONCURRENT_INDEX, ("1.1",), None),
        (Route.ONLINE, ("1.2", "1.3"), GB),
        (Route.ONLINE, ("1.5",), GB),
    ]
    assert planned.to_dict()["rewrites"][1]["extra_disk_bytes"] == GB


def test_records_chain_from_the_stored_version(vendor: VendorSchema) -> None:
    records = [step.to_dict() for step in decide(vendor).steps if step.to_dict()["action"] == "record-version"]
    assert [(item["version"], item["old_version"]) for item in records] == [
        ("1.2", "1.1"),
        ("1.3", "1.2"),
        ("1.5", "1.4"),
    ]


def test_auto_leaves_a_small_table_plain_and_says_why(vendor: VendorSchema) -> None:
    planned = decide(vendor, runs=REWRITE_RATE // 4)
    assert shape(planned) == [("update-schema", "1.5", None)]
    assert {item.path for item in planned.rewrites} == {Route.PLAIN}
    assert "<= --max-stall 1 s" in planned.rewrites[0].reason
    assert planned.rewrites[0].extra_disk is None


def test_max_stall_moves_the_threshold(vendor: VendorSchema) -> None:
    assert shape(decide(vendor, Policy(max_stall=60))) == [("update-schema", "1.5", None)]
    assert shape(decide(vendor, Policy(max_stall=30))) == ONLINE_PROGRAM


def test_plain_never_goes_online_and_online_always_does(vendor: VendorSchema) -> None:
    plain = decide(vendor, Policy(rewrite_mode=RewriteMode.PLAIN))
    assert shape(plain) == [("update-schema", "1.5", None)]
    assert all("--rewrite-mode plain" in item.reason for item in plain.rewrites)
    online = decide(vendor, Policy(rewrite_mode=RewriteMode.ONLINE), runs=8192)
    assert shape(online) == ONLINE_PROGRAM
    assert "--rewrite-mode online" in online.rewrites[1].reason


def test_an_unknown_size_counts_as_over_the_threshold(vendor: VendorSchema) -> None:
    planned = decide(vendor, runs=None)
    assert shape(planned) == ONLINE_PROGRAM
    assert "size unknown" in planned.rewrites[1].reason


REFUSALS = [
    (TableFacts("runs", GB, (), (), ()), "runs has no primary key"),
    (TableFacts("runs", GB, ("id",), ("view recent_runs",), ()), "dependents the swap would break (view recent_runs)"),
    (TableFacts("runs", GB, ("id",), ("trigger audit",), ()), "(trigger audit)"),
    (TableFacts("runs", GB, ("id",), (), ("everything",)), "FOR ALL TABLES publication everything"),
]


@pytest.mark.parametrize(("facts", "named"), REFUSALS)
def test_online_asked_for_and_refused_blocks_with_exit_6(vendor: VendorSchema, facts: TableFacts, named: str) -> None:
    planned = decide(vendor, Policy(rewrite_mode=RewriteMode.ONLINE), facts=facts)
    assert (planned.verdict.outcome, planned.verdict.status) == (Outcome.BLOCKED, 6)
    assert isinstance(planned.verdict.error(), UnsafeStateError)
    assert planned.blocked is not None
    assert named in planned.blocked
    assert planned.blocked.endswith("changed nothing")


@pytest.mark.parametrize(("facts", "named"), REFUSALS)
def test_auto_refused_runs_plain_with_a_warning_naming_why(vendor: VendorSchema, facts: TableFacts, named: str) -> None:
    planned = decide(vendor, facts=facts)
    assert planned.verdict.outcome is Outcome.OK
    # the concurrent build needs no preflight; the rewrites run plain in one update
    assert shape(planned) == [("build-index-concurrently", "1.1", None), ("update-schema", "1.5", None)]
    assert len(planned.warnings) == 1  # once per table, not once per version
    assert named in planned.warnings[0]
    assert all(item.refusals for item in planned.rewrites if item.path is Route.PLAIN)


def test_a_refused_table_still_meets_the_size_guard_and_an_online_one_does_not(vendor: VendorSchema) -> None:
    guard = Policy(max_rewrite_size=parse_size("1MB"))
    refused = decide(vendor, guard, facts=REFUSALS[0][0])
    assert (refused.verdict.outcome, refused.verdict.status) == (Outcome.BLOCKED, 6)
    assert refused.blocked is not None
    assert "--max-rewrite-size" in refused.blocked
    assert decide(vendor, guard).verdict.outcome is Outcome.OK  # everything heavy runs online or concurrently


def test_the_all_tables_publication_is_allowed_when_opted_in(vendor: VendorSchema) -> None:
    published = REFUSALS[3][0]
    policy = Policy(rewrite_mode=RewriteMode.ONLINE, allow_all_tables_publication=True)
    assert decide(vendor, policy, facts=published).verdict.outcome is Outcome.OK


def test_a_role_without_create_on_the_database_is_told_the_grant(vendor: VendorSchema) -> None:
    state = at("1.0", _installed(vendor, "1.0"), Access(user="app", can_create_in_database=False))
    planned = decide(vendor, Policy(rewrite_mode=RewriteMode.ONLINE), state=state)
    assert planned.blocked is not None
    assert 'GRANT CREATE ON DATABASE "temporal" TO "app"' in planned.blocked


def test_a_partly_applied_version_is_repaired_and_the_next_ones_go_online(vendor: VendorSchema) -> None:
    catalog = _installed(vendor, "1.1")
    half = replace(catalog, columns={**catalog.columns, "runs.size": ColumnInfo("integer", False, "length(payload)",
                                                                                True)})  # fmt: skip
    planned = decide(vendor, state=at("1.1", half))
    assert planned.situation is Situation.PARTIAL
    assert shape(planned)[:5] == [
        ("skip-statement", "1.2", 1),
        ("run-statement", "1.2", 2),
        ("run-statement", "1.2", 3),
        ("run-statement", "1.2", 4),
        ("record-version", "1.2", None),
    ]
    assert shape(planned)[5] == ("online-rewrite", "runs", ("1.3",))


def test_the_decision_needs_its_inputs(vendor: VendorSchema) -> None:
    state = at("1.0", _installed(vendor, "1.0"))
    target = resolve_target(vendor, Version("1.5"))
    with pytest.raises(ValueError, match="facts of table runs"):
        plan(state, vendor, target, Policy(), sizes())
    with pytest.raises(ValueError, match="needs the catalog's sizes"):
        plan(state, vendor, target, Policy(rewrite_mode=RewriteMode.ONLINE))
    assert shape(plan(state, vendor, target)) == [("update-schema", "1.5", None)]  # auto without sizes: plain


def test_facts_are_needed_only_for_heavy_tables_and_never_at_the_target(vendor: VendorSchema) -> None:
    state = at("1.0", _installed(vendor, "1.0"))
    assert facts_needed(plan(state, vendor, vendor.newest), sizes()) == {"runs"}
    current = at("1.5", _installed(vendor, "1.5"))
    assert facts_needed(plan(current, vendor, vendor.newest), sizes()) == frozenset()


def test_a_version_that_rewrites_two_tables_runs_plain_in_auto_and_is_refused_online(tmp_path: Path) -> None:
    spec = {
        "1.0": "CREATE TABLE runs (id INT PRIMARY KEY); CREATE TABLE notes (id INT PRIMARY KEY);",
        "1.1": """
            ALTER TABLE runs ADD COLUMN twice INT GENERATED ALWAYS AS (id * 2) STORED;
            ALTER TABLE notes ADD COLUMN twice INT GENERATED ALWAYS AS (id * 2) STORED;
        """,
    }
    two = load_vendor_schema(write_tree(tmp_path, "temporal", spec), "temporal")
    big = Sizes({"runs": TableSize(1, GB), "notes": TableSize(1, GB)}, {}, {})
    facts = {"runs": KEYED, "notes": replace(KEYED, table="notes")}
    state = at("1.0", _installed(two, "1.0"))
    auto = plan(state, two, two.newest, Policy(), big, facts=facts)
    assert shape(auto) == [("update-schema", "1.1", None)]
    assert "takes one table per version" in auto.warnings[0]
    online = plan(state, two, two.newest, Policy(rewrite_mode=RewriteMode.ONLINE), big, facts=facts)
    assert online.blocked is not None
    assert "takes one table per version" in online.blocked


def test_an_index_on_columns_its_version_adds_goes_online_with_them(tmp_path: Path) -> None:
    spec = {
        "1.0": "CREATE TABLE runs (id INT PRIMARY KEY);",
        "1.1": "ALTER TABLE runs ADD COLUMN tag TEXT; CREATE INDEX runs_by_tag ON runs (tag);",
    }
    tree = load_vendor_schema(write_tree(tmp_path, "temporal", spec), "temporal")
    planned = plan(at("1.0", _installed(tree, "1.0")), tree, tree.newest, Policy(), sizes(), facts={"runs": KEYED})
    assert shape(planned) == [
        ("online-rewrite", "runs", ("1.1",)),
        ("skip-statement", "1.1", 1),
        ("skip-statement", "1.1", 2),
        ("record-version", "1.1", None),
    ]


def test_a_table_created_by_a_pending_version_is_not_heavy(tmp_path: Path) -> None:
    spec = {
        "1.0": "CREATE TABLE runs (id INT PRIMARY KEY);",
        "1.1": "CREATE TABLE fresh (id INT PRIMARY KEY, payload TEXT);",
        "1.2": "ALTER TABLE fresh ADD COLUMN size INT GENERATED ALWAYS AS (length(payload)) STORED;",
    }
    tree = load_vendor_schema(write_tree(tmp_path, "temporal", spec), "temporal")
    planned = plan(at("1.0", _installed(tree, "1.0")), tree, tree.newest, Policy(), sizes(), facts={})
    assert shape(planned) == [("update-schema", "1.2", None)]
    assert planned.rewrites == ()


# -- an online rewrite a run left in progress ---------------------------------------------------------------


def in_progress(vendor: VendorSchema, phase: Phase = Phase.COPY, versions: tuple[str, ...] = ("1.2", "1.3")) -> State:
    return replace(at("1.1", _installed(vendor, "1.1")), online=OnlineProgress("runs", versions, phase))


def test_an_online_rewrite_in_progress_is_resumed_then_the_rest_planned(vendor: VendorSchema) -> None:
    planned = plan(in_progress(vendor), vendor, vendor.newest, Policy(), sizes(), facts={"runs": KEYED})
    assert planned.situation is Situation.ONLINE
    assert planned.to_dict()["state"] == "online-rewrite in progress (copy)"
    assert planned.to_dict()["online_rewrite"] == {"table": "runs", "versions": ["1.2", "1.3"], "phase": "copy"}
    assert shape(planned) == ONLINE_PROGRAM[2:]
    resumed = planned.steps[0]
    assert isinstance(resumed, OnlineRewrite)
    assert "resumes the online rewrite a run left in progress (phase copy)" in resumed.reason
    assert len(resumed.statements) == 3


def test_the_swapped_table_is_not_mistaken_for_a_partly_applied_version(vendor: VendorSchema) -> None:
    state = replace(in_progress(vendor, Phase.CLEANUP), catalog=_installed(vendor, "1.3"))  # the new table in place
    planned = plan(state, vendor, vendor.newest, Policy(), sizes(), facts={"runs": KEYED})
    assert planned.refusal is None
    assert shape(planned)[0] == ("online-rewrite", "runs", ("1.2", "1.3"))


@pytest.mark.parametrize("phase", [phase for phase in Phase if phase is not Phase.CLEANUP])
def test_abort_online_is_the_whole_plan(vendor: VendorSchema, phase: Phase) -> None:
    planned = plan(in_progress(vendor, phase), vendor, vendor.newest, Policy(abort_online=True))
    assert [step.to_dict() for step in planned.steps] == [{"action": "abort-online", "table": "runs"}]
    assert planned.verdict.outcome is Outcome.OK


def test_abort_after_the_swap_is_refused_with_the_fix(vendor: VendorSchema) -> None:
    planned = plan(in_progress(vendor, Phase.CLEANUP), vendor, vendor.newest, Policy(abort_online=True))
    assert planned.verdict.status == 6
    assert planned.refusal is not None
    assert "run migrate without --abort-online to finish it; changed nothing" in planned.refusal


def test_plain_beside_a_rewrite_in_progress_is_refused(vendor: VendorSchema) -> None:
    planned = plan(in_progress(vendor), vendor, vendor.newest, Policy(rewrite_mode=RewriteMode.PLAIN))
    assert planned.refusal is not None
    assert "to resume it, or migrate --abort-online" in planned.refusal
    assert planned.verdict.status == 6


def test_a_rewrite_in_progress_for_other_versions_is_refused(vendor: VendorSchema) -> None:
    planned = plan(in_progress(vendor, versions=("1.3",)), vendor, vendor.newest, Policy(), sizes())
    assert planned.refusal is not None
    assert "run migrate --abort-online, then migrate" in planned.refusal
    lower = plan(in_progress(vendor), vendor, resolve_target(vendor, Version("1.2")), Policy(), sizes())
    assert lower.refusal is not None  # the target moved below the rewrite's versions


def test_abort_online_with_nothing_in_progress_plans_nothing_and_warns(vendor: VendorSchema) -> None:
    planned = decide(vendor, Policy(abort_online=True))
    assert planned.steps == ()
    assert "no online rewrite is in progress" in planned.warnings[-1]
    assert planned.verdict.outcome is Outcome.OK


# -- the pinned releases' visibility trees ------------------------------------------------------------------

VISIBILITY = Sizes({"executions_visibility": TableSize(100_000, 1600 * 1024**2)}, {}, {})
VISIBILITY_FACTS = {"executions_visibility": TableFacts("executions_visibility", 0, ("namespace_id", "run_id"), (), ())}


def real(release: str, version: str, policy: Policy = AUTO) -> Plan:
    tree = load_vendor_schema(_release_tree(release), "visibility")
    state = at(version, _installed(tree, version))
    return plan(state, tree, tree.newest, policy, VISIBILITY, facts=VISIBILITY_FACTS)


def test_visibility_1_12_goes_online_in_one_pass_for_1_13_and_1_14() -> None:
    planned = real("v1.32.2", "1.12")
    rewrite = planned.steps[0]
    assert isinstance(rewrite, OnlineRewrite)
    assert (rewrite.table, rewrite.versions, len(rewrite.statements)) == ("executions_visibility", ("1.13", "1.14"), 21)
    assert all(
        "executions_visibility" in text and not text.lstrip().upper().startswith("DO") for text in rewrite.statements
    )
    actions = [step.to_dict()["action"] for step in planned.steps[1:]]
    assert actions.count("skip-statement") == 21
    assert actions.count("run-statement") == 2  # the two DO blocks
    assert actions[-1] == "record-version"
    assert [step.to_dict() for step in real("v1.32.2", "1.12", Policy(rewrite_mode=RewriteMode.PLAIN)).steps] == [
        {"action": "update-schema", "version": "1.14"}
    ]


def test_visibility_1_0_builds_1_1_concurrently_and_rewrites_1_2_to_1_8_in_one_pass() -> None:
    planned = real("v1.32.2", "1.0")
    steps = [step.to_dict() for step in planned.steps]
    repeated = ("skip-statement", "run-statement", "record-version")
    program = [
        (step["action"], step.get("version"), step.get("versions")) for step in steps if step["action"] not in repeated
    ]
    assert program == [
        ("build-index-concurrently", "1.1", None),
        ("update-schema", "1.1", None),
        ("online-rewrite", None, ["1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8"]),
        ("update-schema", "1.12", None),
        ("online-rewrite", None, ["1.13", "1.14"]),
    ]


def test_visibility_1_9_of_v1_30_4_rewrites_1_10_to_1_13_in_one_pass() -> None:
    planned = real("v1.30.4", "1.9")
    assert isinstance(planned.steps[0], OnlineRewrite)
    assert planned.steps[0].versions == ("1.10", "1.11", "1.12", "1.13")


def test_an_index_the_version_drops_first_is_rebuilt_online_and_one_in_place_is_not_built(tmp_path: Path) -> None:
    spec = {
        "1.0": "CREATE TABLE runs (id INT PRIMARY KEY, tag TEXT); CREATE INDEX runs_by_tag ON runs (tag);",
        "1.1": "DROP INDEX runs_by_tag; CREATE INDEX runs_by_tag ON runs (tag, id);",
    }
    tree = load_vendor_schema(write_tree(tmp_path, "temporal", spec), "temporal")
    state = at("1.0", _installed(tree, "1.0"))
    table_sizes = replace(sizes(), index_tables={"runs_by_tag": "runs"})
    planned = plan(state, tree, tree.newest, AUTO, table_sizes, facts={"runs": KEYED})
    rewrite = planned.steps[0]
    assert isinstance(rewrite, OnlineRewrite)
    assert rewrite.versions == ("1.1",)
    assert [" ".join(text.split()) for text in rewrite.statements] == [
        "DROP INDEX runs_by_tag;",
        "CREATE INDEX runs_by_tag ON runs (tag, id);",
    ]


def test_an_index_already_in_place_is_not_built_again(tmp_path: Path) -> None:
    spec = {
        "1.0": "CREATE TABLE runs (id INT PRIMARY KEY, tag TEXT); CREATE INDEX runs_by_tag ON runs (tag);",
        "1.1": "CREATE INDEX IF NOT EXISTS runs_by_tag ON runs (tag);",
    }
    tree = load_vendor_schema(write_tree(tmp_path, "temporal", spec), "temporal")
    planned = plan(at("1.0", _installed(tree, "1.0")), tree, tree.newest, AUTO, sizes(), facts={"runs": KEYED})
    assert shape(planned) == [("update-schema", "1.1", None)]
