"""Online safety without a database: sizes, the tool's session settings, the impact model, the guard, retries."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import structlog

from migrator.cli.options import build_settings
from migrator.core.impact import Effect, Lock, VersionImpact, classify, impact_report, too_large
from migrator.core.planner import Action, plan
from migrator.core.settings import Settings
from migrator.core.sizes import Sizes, TableSize, parse_size, pretty_rows, pretty_size
from migrator.core.state import Catalog, ColumnInfo, IndexInfo, State
from migrator.core.statements import describe
from migrator.db.activity import Blocker, Running
from migrator.errors import LockWaitError, UsageError
from migrator.run.migrate import _gave_up
from migrator.run.watcher import Watcher
from migrator.source.tree import load_vendor_schema
from migrator.tool.runner import driver_sqlstate, run_env, tool_session_env
from tests.conftest import TreeSpec

GB = 1024**3
BIG = Sizes(
    {"visits": TableSize(35_100_000, 48 * GB)}, {"visits_by_day": "visits"}, {"visits.note": "character varying(64)"}
)


def settings(**overrides: str) -> Settings:
    values: dict[str, str | bool | None] = {"user": "temporal"}
    values.update(overrides)
    return build_settings("migrate", values, {})


@pytest.mark.parametrize(
    ("text", "size"),
    [("1kB", 1024), ("500MB", 500 * 1024**2), ("2GB", 2 * GB), ("1.5 gb", int(1.5 * GB)), ("100", 100), ("7 bytes", 7)],
)
def test_sizes_are_read_as_postgresql_reads_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["2GiB", "GB", "-1GB", "1e3", "lots"])
def test_a_size_postgresql_would_reject_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(text)):
        parse_size(text)


def test_sizes_and_rows_are_printed_for_people() -> None:
    assert (pretty_size(48 * GB), pretty_size(int(1.3 * GB)), pretty_size(21 * 1024**2)) == ("48 GB", "1.3 GB", "21 MB")
    assert (pretty_rows(35_100_000), pretty_rows(100_000), pretty_rows(950)) == ("35.1M", "100k", "950")


@pytest.mark.parametrize(
    ("flag", "value", "fix"),
    [
        ("max_rewrite_size", "2 GiB", "500MB or 2GB"),
        ("progress_interval", "0", "more than 0"),
        ("ddl_lock_timeout", "soon", "number of seconds"),
    ],
)
def test_bad_online_settings_are_usage_errors_naming_the_fix(flag: str, value: str, fix: str) -> None:
    with pytest.raises(UsageError, match=fix):
        settings(**{flag: value})


def test_the_tool_gets_bounded_lock_waits_after_the_users_own_pgoptions() -> None:
    env = tool_session_env(2.5, 150000, {"PGOPTIONS": "-c search_path=temporal"})
    assert env["PGOPTIONS"] == (
        "-c search_path=temporal -c lock_timeout=2500 -c statement_timeout=0 -c client_connection_check_interval=2000"
    )
    assert tool_session_env(0, 150000, {})["PGOPTIONS"].startswith("-c lock_timeout=0 ")


def test_servers_before_14_get_no_connection_check_they_would_refuse() -> None:
    assert tool_session_env(5, 130012, {})["PGOPTIONS"] == "-c lock_timeout=5000 -c statement_timeout=0"


def test_the_run_environment_carries_the_ddl_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=64MB")
    env = run_env(settings(ddl_lock_timeout="7"), None, 150000)
    assert env["PGOPTIONS"].startswith("-c work_mem=64MB -c lock_timeout=7000 ")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("error executing statement: pq: canceling statement due to lock timeout (55P03)", "55P03"),
        ("error executing statement: ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)", "55P03"),
        ('pq: relation "x" does not exist (42P01)', "42P01"),
        ("dial tcp 127.0.0.1:5432: connect: connection refused", None),
    ],
)
def test_the_sqlstate_is_read_from_the_drivers_code_field(error: str, code: str | None) -> None:
    assert driver_sqlstate(error) == code


@pytest.mark.parametrize(
    ("statement", "table", "lock", "effect"),
    [
        ("ALTER TABLE visits ADD COLUMN Tag VARCHAR(255) GENERATED ALWAYS AS (doc->>'Tag') STORED", "visits",
         Lock.ACCESS_EXCLUSIVE, Effect.REWRITE),
        ("ALTER TABLE visits ADD COLUMN id2 UUID DEFAULT gen_random_uuid()", "visits", Lock.ACCESS_EXCLUSIVE,
         Effect.REWRITE),
        ("ALTER TABLE visits ADD n BIGINT NOT NULL DEFAULT 0", "visits", Lock.ACCESS_EXCLUSIVE, Effect.CATALOG),
        ("ALTER TABLE visits ALTER COLUMN note TYPE VARCHAR(255)", "visits", Lock.ACCESS_EXCLUSIVE, Effect.CATALOG),
        ("ALTER TABLE visits ALTER COLUMN note TYPE VARCHAR(16)", "visits", Lock.ACCESS_EXCLUSIVE, Effect.REWRITE),
        ("ALTER TABLE visits ALTER COLUMN other TYPE TEXT", "visits", Lock.ACCESS_EXCLUSIVE, Effect.REWRITE),
        ("ALTER TABLE visits ALTER COLUMN note SET NOT NULL", "visits", Lock.ACCESS_EXCLUSIVE, Effect.SCAN),
        ("ALTER TABLE visits ADD CONSTRAINT c CHECK (n > 0) NOT VALID", "visits", Lock.ACCESS_EXCLUSIVE,
         Effect.CATALOG),
        ("ALTER TABLE visits DROP COLUMN note", "visits", Lock.ACCESS_EXCLUSIVE, Effect.CATALOG),
        ("CREATE INDEX by_day ON visits (day)", "visits", Lock.SHARE, Effect.SCAN),
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS by_day ON visits USING GIN (doc)", "visits",
         Lock.SHARE_UPDATE_EXCLUSIVE, Effect.SCAN),
        ("DROP INDEX visits_by_day", "visits", Lock.ACCESS_EXCLUSIVE, Effect.CATALOG),
        ("CREATE TABLE IF NOT EXISTS notes (id INT)", "notes", Lock.ACCESS_EXCLUSIVE, Effect.CATALOG),
        ("INSERT INTO visits (id) VALUES (1)", "visits", Lock.ROW_EXCLUSIVE, Effect.WRITE),
        ("DO $$ BEGIN PERFORM 1; END $$", None, None, Effect.CATALOG),
    ],
)  # fmt: skip
def test_each_statement_form_has_its_lock_and_effect(
    statement: str, table: str | None, lock: Lock | None, effect: Effect
) -> None:
    assert classify(describe(statement), BIG) == (table, lock, effect)


ONLINE_STORE: TreeSpec = {
    "1.0": "CREATE TABLE visits (id INT PRIMARY KEY, doc JSONB);",
    "1.1": """
        ALTER TABLE visits ADD COLUMN Tag VARCHAR(255) GENERATED ALWAYS AS (doc->>'Tag') STORED;
        CREATE INDEX CONCURRENTLY IF NOT EXISTS by_tag ON visits (Tag);
        CREATE INDEX CONCURRENTLY IF NOT EXISTS by_doc ON visits USING GIN (doc);
    """,
    "1.2": "ALTER TABLE visits ADD COLUMN note VARCHAR(16) NULL;",
}


def test_the_summary_names_the_rewrite_its_table_size_and_lock(tree_writer: Callable[[TreeSpec], Path]) -> None:
    vendor = load_vendor_schema(tree_writer(ONLINE_STORE), "temporal")
    report = impact_report(vendor.versions[1:], BIG)
    assert [item.summary for item in report] == [
        "v1.1 rewrites visits (35.1M rows, 48 GB) under ACCESS EXCLUSIVE; "
        "scans visits (35.1M rows, 48 GB) under SHARE UPDATE EXCLUSIVE",
        "v1.2 changes the catalog only (short locks once granted)",
    ]
    first = report[0].to_dict()["statements"][0]
    assert first == {
        "index": 1,
        "statement": "ALTER TABLE visits ADD COLUMN Tag VARCHAR(255) GENERATED ALWAYS AS (doc->>'Tag') STORED;",
        "table": "visits",
        "lock": "ACCESS EXCLUSIVE",
        "effect": "rewrite",
        "rows": 35_100_000,
        "bytes": 48 * GB,
        "locked_by": None,
        "online": False,
    }
    # a repair that already applied the rewrite reports only what is left to run
    assert [item.index for item in impact_report(vendor.versions[1:2], BIG, applied=1)[0].statements] == [2, 3]


def test_the_guard_refuses_a_rewrite_of_a_larger_table_only(tree_writer: Callable[[TreeSpec], Path]) -> None:
    vendor = load_vendor_schema(tree_writer(ONLINE_STORE), "temporal")
    report = impact_report(vendor.versions[1:], BIG)
    refusal = too_large(report, parse_size("10GB"))
    assert refusal is not None
    assert refusal.startswith("v1.1 statement 1 (ALTER TABLE visits ADD COLUMN Tag")
    assert "rewrites visits (35.1M rows, 48 GB) under ACCESS EXCLUSIVE, larger than --max-rewrite-size 10 GB" in refusal
    assert too_large(report, parse_size("50GB")) is None
    # CREATE INDEX CONCURRENTLY reads the table without stopping its writers: not what the guard is for
    assert too_large(impact_report(vendor.versions[1:2], BIG, applied=1), parse_size("1MB")) is None


BY_TAG = "CREATE INDEX by_tag ON public.visits USING btree (tag)"


def test_an_invalid_index_left_by_a_failed_build_is_dropped_as_a_plan_step(
    tree_writer: Callable[[TreeSpec], Path],
) -> None:
    vendor = load_vendor_schema(tree_writer(ONLINE_STORE), "temporal")
    catalog = Catalog(
        tables=frozenset({"visits", "schema_version"}),
        columns={"visits.id": ColumnInfo("integer", True), "visits.doc": ColumnInfo("jsonb"),
                 "visits.tag": ColumnInfo("character varying(255)", False, "(doc ->> 'Tag'::text)", True)},
        indexes={"by_tag": IndexInfo(False, BY_TAG)},
    )  # fmt: skip
    planned = plan(State("temporal", "1.0", catalog=catalog), vendor, vendor.newest)
    described = [step.to_dict() for step in planned.steps]
    assert [(step["action"], step["version"], step.get("index") or step.get("statement", 0)) for step in described] == [
        (Action.DROP_INVALID_INDEX, "1.1", "by_tag"),
        (Action.SKIP_STATEMENT, "1.1", 1),
        (Action.RUN_STATEMENT, "1.1", 2),
        (Action.RUN_STATEMENT, "1.1", 3),
        (Action.RECORD_VERSION, "1.1", 0),
        (Action.UPDATE, "1.2", 0),
    ]
    healthy = replace(catalog, indexes={"by_tag": IndexInfo(True, BY_TAG)})
    assert Action.DROP_INVALID_INDEX not in {s.action for s in plan(State("temporal", "1.0", catalog=healthy),
                                                                    vendor, vendor.newest).steps}  # fmt: skip


def test_giving_up_names_the_blocker_and_the_fix() -> None:
    watcher = Watcher(settings(), own_pid=1)
    watcher.last_blockers = (Blocker(4242, "analyst", "psql", "client backend", "idle in transaction", 312.4, None),)
    error = _gave_up(LockWaitError("temporal-sql-tool update-schema failed"), settings(ddl_retry_timeout="60"), watcher)
    message = str(error)
    assert error.status == 7
    assert "after --ddl-retry-timeout 60s" in message
    assert "pid 4242 (psql, role analyst, idle in transaction, transaction open 312s)" in message
    assert "SELECT pg_terminate_backend(pid) for pid 4242" in message


def test_a_version_without_statements_is_called_a_bump() -> None:
    assert VersionImpact("1.10", ()).summary == "v1.10 runs no statement (a version bump only)"


INDEX_BUILD = Running(
    pid=77, query="CREATE INDEX CONCURRENTLY IF NOT EXISTS by_doc ON visits USING GIN (doc)", seconds=12.04,
    wait_event_type=None, wait_event=None, blocked_by=(), phase="building index: scanning table",
    blocks_done=1200, blocks_total=4800, tuples_done=0, tuples_total=0,
)  # fmt: skip


def test_progress_names_the_version_statement_and_index_build_phase(tree_writer: Callable[[TreeSpec], Path]) -> None:
    watcher = Watcher(settings(), own_pid=1)
    watcher.track(load_vendor_schema(tree_writer(ONLINE_STORE), "temporal").versions)
    with structlog.testing.capture_logs() as events:
        watcher._progress(INDEX_BUILD, [])
    assert events == [
        {
            "event": "ddl.progress",
            "log_level": "info",
            "version": "1.1",
            "statement_index": 3,
            "statement": "CREATE INDEX CONCURRENTLY IF NOT EXISTS by_doc ON visits USING GIN (doc)",
            "pid": 77,
            "seconds": 12.0,
            "phase": "building index: scanning table",
            "blocks_done": 1200,
            "blocks_total": 4800,
            "tuples_done": 0,
            "tuples_total": 0,
        }
    ]


def test_on_a_terminal_progress_is_one_line_redrawn_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    watcher = Watcher(settings(log_format="console"), own_pid=1)
    watcher.in_place = True
    watcher._progress(INDEX_BUILD, [])
    watcher._progress(replace(INDEX_BUILD, seconds=22.0, blocks_done=2400), [])
    written = capsys.readouterr().err
    assert "\n" not in written
    assert written.count("\r\x1b[2K") == 2
    last = written.rsplit("\r\x1b[2K", 1)[1]
    assert last.split(" ", 1)[1].startswith("ddl.progress 22s building index: scanning table blocks 2400/4800 | CRE")
