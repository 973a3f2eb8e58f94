"""Online safety against the real tool on tables with data (issue 10, item 6; issue 13, item 2).

- A visibility store holding 100k rows, filled at v1.1 (before the vendor's many indexes make inserts slow:
  6 s instead of 60), upgraded by the migrator with v1.30.4's tree (the per-version rewrites v1.2, v1.3, v1.7,
  v1.8 and v1.10-v1.12) and then the pinned one (the combined rewrite + CREATE INDEX CONCURRENTLY).
  Rows survive (count and sampled rows), `plan`'s impact sizes equal the catalog's, and `ddl.progress`
  reports the rewrites while they run. Its index builds take well under a second here, too short to report
  reliably; the phase of pg_stat_progress_create_index is tested on an index build held in its wait for old
  snapshots.
- A default store at 1.13 with rows in every table, upgraded to the pinned release (v1.14-v1.16 alter
  current_executions): rows survive.
- A session holding a conflicting lock or an old snapshot: the migrator logs `ddl.blocked` naming it, gives up
  on the lock, repairs and retries, and converges to a clean install's schema once the blocker ends; when the
  blocker outlasts `--ddl-retry-timeout` it exits 7 naming it (with either of the tool's drivers); stopped by
  SIGTERM or SIGKILL while the tool's statement waits, or by SIGTERM while its own repair statement waits, it
  leaves no statement queued on the server.
- `--max-rewrite-size` refuses (exit 6) before any DDL.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.ci import unavailable
from devtools.data import columns_of, fill, snapshot
from devtools.databases import AppDb, MakeDb
from devtools.pins import Store, resolve_schema_dir, resolve_tool
from integration.support.processes import EventStream, RunMigrator, StartMigrator, bring_to, events_named, log_events
from migrator.core.statements import Kind
from migrator.core.versions import parse_version
from migrator.db.session import TOOL_APPLICATION_NAME
from migrator.source.tree import load_vendor_schema

# Releases the data tests start from; the pinned release comes last.
FIRST_RELEASE = "v1.29.1"
# The default store starts here: v1.14-v1.16 then alter current_executions, and v1.16 drops and re-adds a column
# (resetting its values, by the vendor's design: that column is left out of the comparison).
DEFAULT_STORE_START = "1.13"
REWRITE_RELEASE = "v1.30.4"  # visibility 1.12: v1.2, v1.3, v1.7, v1.8, v1.10-v1.12 each rewrite the table
VISIBILITY_ROWS = 100_000
DEFAULT_ROWS = 2_000
BLOCKER = "analytics-blocker"
_VERSION_TABLES = ("schema_version", "schema_update_history")


def release(version: str) -> tuple[Path, Path]:
    """(the tool that installs it, schema dir) of an upgrade source (devtools.pins.resolve_tool)."""
    (tool, tool_why), (schema, tree_why) = resolve_tool(version), resolve_schema_dir(version)
    if tool is None or schema is None:
        unavailable(tool_why if tool is None else tree_why)
    return tool, schema


def newest(schema_dir: Path, store: Store) -> str:
    return load_vendor_schema(schema_dir, store).newest.name


def catalog_sizes(db: AppDb) -> dict[str, tuple[int, int]]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT relname, reltuples::bigint, pg_total_relation_size(oid) FROM pg_class"
            " WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
        ).fetchall()
    return {name: (tuples, size) for name, tuples, size in rows}


def check_impact(db: AppDb, document: dict[str, Any]) -> list[str]:
    """Every statement's rows and bytes equal the catalog's now; returns the versions' summaries."""
    sizes = catalog_sizes(db)
    assert [item["version"] for item in document["impact"]] == document["pending_versions"]
    for version in document["impact"]:
        for statement in version["statements"]:
            if statement["table"] in sizes:
                assert (statement["rows"], statement["bytes"]) == sizes[statement["table"]], statement
    return [item["summary"] for item in document["impact"]]


def plan_document(run_migrator: RunMigrator, db: AppDb, env: dict[str, str]) -> dict[str, Any]:
    proc = run_migrator(db, "plan", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    document: dict[str, Any] = json.loads(proc.stdout)
    return document


def dropped_columns(schema_dir: Path, store: Store, after: str) -> set[str]:
    """``table.column`` of every column a version newer than ``after`` drops (its values do not survive)."""
    return {
        effect.ref.name
        for version in load_vendor_schema(schema_dir, store).after(after)
        for statement in version.statements
        for effect in statement.effects
        if effect.ref.kind is Kind.COLUMN and not effect.present
    }


def tables_with_rows(db: AppDb, columns: dict[str, list[str]]) -> dict[str, Any]:
    """Snapshots of the given tables over the given columns (the ones they had before the upgrade)."""
    with db.connect() as conn:
        return {name: snapshot(conn, name, names) for name, names in columns.items()}


def test_visibility_store_with_100k_rows_survives_every_rewrite(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    rewrite_tool, rewrite_schema = release(REWRITE_RELEASE)
    db = make_db()
    bring_to(rewrite_tool, db, rewrite_schema, "visibility", "1.1")
    with db.connect() as conn:
        fill(conn, "executions_visibility", VISIBILITY_ROWS)
        columns = columns_of(conn, "executions_visibility")
        before = snapshot(conn, "executions_visibility", columns)
    assert before.count == VISIBILITY_ROWS
    summaries: list[str] = []
    progress: list[dict[str, Any]] = []
    for tool, tree in ((rewrite_tool, rewrite_schema), (temporal_tool, schema_dir)):
        env = db.env(TEMPORAL_SQL_TOOL=str(tool), MIGRATOR_SCHEMA_DIR=str(tree), MIGRATOR_SCHEMA="visibility")
        summaries += check_impact(db, plan_document(run_migrator, db, env))
        proc = run_migrator(db, "migrate", "--progress-interval", "0.5", env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        progress += events_named(proc.stderr, "ddl.progress")
        assert db.version_rows() == [(db.name, newest(tree, "visibility"))]
        with db.connect() as conn:
            assert snapshot(conn, "executions_visibility", columns) == before
    assert parse_version(newest(schema_dir, "visibility")) > parse_version("1.12"), "pin a release with v1.13"
    rewrites = [summary for summary in summaries if "rewrites executions_visibility (100k rows" in summary]
    assert {summary.split()[0] for summary in rewrites} >= {"v1.2", "v1.10", "v1.11", "v1.12", "v1.13"}
    # the rewrites of 100k rows take seconds each: reported while they run, named by version and statement
    rewrites_seen = {event["version"] for event in progress if event["statement"].startswith("ALTER TABLE")}
    assert newest(schema_dir, "visibility") in rewrites_seen, progress[:3]
    assert len(rewrites_seen) >= 3, rewrites_seen
    assert max(event["seconds"] for event in progress) >= 2


def test_default_store_with_rows_in_every_table_survives(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    first_tool, first_schema = release(FIRST_RELEASE)
    db = make_db()
    bring_to(first_tool, db, first_schema, "temporal", DEFAULT_STORE_START)
    single_row: list[str] = []  # tables whose CHECK allows one fixed row only: left empty
    with db.connect() as conn:
        for table in catalog_sizes(db):
            if table not in _VERSION_TABLES:
                try:
                    fill(conn, table, DEFAULT_ROWS)
                except psycopg.errors.CheckViolation:
                    single_row.append(table)
        dropped = dropped_columns(schema_dir, "temporal", DEFAULT_STORE_START)
        columns = {
            name: [column for column in columns_of(conn, name) if f"{name}.{column}" not in dropped]
            for name in catalog_sizes(db)
            if name not in (*_VERSION_TABLES, *single_row)
        }
    before = tables_with_rows(db, columns)
    assert {"executions", "current_executions", "history_node", "history_tree"} <= set(before)
    assert len(single_row) <= 2, single_row
    assert all(item.count >= DEFAULT_ROWS for item in before.values())  # a seed row may come on top
    env = db.env(MIGRATOR_SCHEMA="temporal")
    check_impact(db, plan_document(run_migrator, db, env))
    proc = run_migrator(db, "migrate", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert db.version_rows() == [(db.name, newest(schema_dir, "temporal"))]
    assert tables_with_rows(db, columns) == before


# -- blocked DDL -------------------------------------------------------------------------------------------


def previous_version(schema_dir: Path, store: Store) -> str:
    return load_vendor_schema(schema_dir, store).versions[-2].name


def blocked_store(make_db: MakeDb, temporal_tool: Path, schema_dir: Path, rows: int = 5_000) -> AppDb:
    """A visibility store one version below the pinned newest (so the last version's DDL is pending), with rows."""
    db = make_db()
    bring_to(temporal_tool, db, schema_dir, "visibility", previous_version(schema_dir, "visibility"))
    with db.connect() as conn:
        fill(conn, "executions_visibility", rows)
    return db


@contextmanager
def blocker(db: AppDb, kind: str) -> Iterator[int]:
    """A session that blocks the pending DDL until the block ends: ``lock`` holds ACCESS SHARE on the table
    (an idle-in-transaction reader), ``snapshot`` holds an old snapshot (what CREATE INDEX CONCURRENTLY waits for)."""
    conn = psycopg.connect(
        host=db.server.host, port=db.server.port, user=db.user, password=db.password, dbname=db.name,
        application_name=BLOCKER,
    )  # fmt: skip
    try:
        if kind == "lock":
            conn.execute("SELECT count(*) FROM executions_visibility")
        else:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT count(*) FROM schema_version")
        pid = conn.info.backend_pid
        yield pid
    finally:
        conn.rollback()
        conn.close()


def tool_sessions(db: AppDb, application: str = TOOL_APPLICATION_NAME) -> list[tuple[int, str, str | None]]:
    """The tool's (or our own) sessions still doing something on the server (pid, state, wait event type)."""
    with db.server.admin_connect(db.name) as conn:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND state <> 'idle'",
            (application,),
        ).fetchall()
    return [(pid, state, wait) for pid, state, wait in rows]


def index_build_waiting(db: AppDb) -> bool:
    with db.server.admin_connect(db.name) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_progress_create_index"
            " WHERE datname = current_database() AND phase LIKE 'waiting for%'"
        ).fetchone()
    return bool(row and row[0])


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# The DDL waits 2 s per attempt: longer than the watcher's 1 s poll, so each attempt's blocker is seen.
@pytest.mark.parametrize("kind", ["lock", "snapshot"])
def test_blocked_ddl_is_retried_and_converges_to_a_clean_install(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path, kind: str
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir)
    env = db.env(MIGRATOR_SCHEMA="visibility")
    with db.connect() as conn:
        columns = columns_of(conn, "executions_visibility")
        before = snapshot(conn, "executions_visibility", columns)
    with blocker(db, kind) as pid:
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "2", "--ddl-retry-timeout", "120", env=env)
        stream = EventStream(proc)
        # held until the migrator has named this blocker and retried at least once behind it
        stream.wait_for("ddl.blocked", 100, where=lambda event: pid in {b["pid"] for b in event["blockers"]})
        stream.wait_for("ddl.retrying", 100)
        assert proc.poll() is None, "migrate finished while the blocker held"
    assert proc.wait(180) == 0, stream.rest()[-3000:]
    stderr = stream.rest()
    blocked = events_named(stderr, "ddl.blocked")
    # our blocker, named; an autovacuum worker analysing the freshly filled table may show up beside it
    named = {b["pid"]: b for event in blocked for b in event["blockers"]}
    assert named[pid]["application_name"] == BLOCKER, blocked
    assert {event["version"] for event in blocked} == {newest(schema_dir, "visibility")}
    assert events_named(stderr, "ddl.retrying")
    if kind == "snapshot":  # the index build gave up in its wait for old snapshots: INVALID, dropped, rebuilt
        steps = [step for event in events_named(stderr, "plan.made") for step in event["steps"]]
        assert any(step["action"] == "drop-invalid-index" for step in steps), steps
    clean = make_db()
    bring_to(temporal_tool, clean, schema_dir, "visibility", None)
    assert db.schema_dump() == clean.schema_dump()
    with db.connect() as conn:
        assert snapshot(conn, "executions_visibility", columns) == before


@pytest.mark.parametrize("plugin", ["postgres12", "postgres12_pgx"])  # lib/pq and pgx both read PGOPTIONS
def test_a_blocker_outlasting_the_retry_time_is_named_in_exit_7(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path, plugin: str
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=100)
    before = db.version_rows()
    env = db.env(MIGRATOR_SCHEMA="visibility", SQL_PLUGIN=plugin)
    with blocker(db, "lock") as pid:
        started = time.monotonic()
        proc = run_migrator(db, "migrate", "--ddl-lock-timeout", "2", "--ddl-retry-timeout", "5", env=env)
        assert time.monotonic() - started < 30, "the lock waits were not bounded"
        assert tool_sessions(db) == []
    assert proc.returncode == 7, proc.stderr[-3000:]
    error = events_named(proc.stderr, "run.failed")[-1]["error"]
    assert f"pid {pid} ({BLOCKER}" in error
    assert "idle in transaction" in error
    assert f"pg_terminate_backend(pid) for pid {pid}" in error
    assert events_named(proc.stderr, "ddl.retrying")
    assert db.version_rows() == before


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_migrator_leaves_nothing_queued(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path, stop: signal.Signals
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=100)
    before = db.version_rows()
    with db.connect() as conn:
        columns = columns_of(conn, "executions_visibility")
    with blocker(db, "lock"):
        # no lock timeout: the tool's ALTER waits for as long as the blocker holds
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", env=db.env(MIGRATOR_SCHEMA="visibility"))
        wait_until(lambda: any(wait == "Lock" for _, _, wait in tool_sessions(db)), 60, "the tool's ALTER to queue")
        proc.send_signal(stop)
        proc.communicate(timeout=30)
        wait_until(lambda: tool_sessions(db) == [], 10, "the server to drop the tool's queued ALTER")
    assert proc.returncode == (143 if stop == signal.SIGTERM else -signal.SIGKILL)
    time.sleep(1)
    assert db.version_rows() == before
    with db.connect() as conn:
        assert columns_of(conn, "executions_visibility") == columns, "the queued ALTER was applied after the stop"


def test_max_rewrite_size_refuses_before_any_ddl(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=1_000)
    before = (db.version_rows(), db.schema_dump())
    planned = run_migrator(db, "plan", "--max-rewrite-size", "100kB", env=db.env(MIGRATOR_SCHEMA="visibility"))
    assert "larger than --max-rewrite-size 100 kB" in json.loads(planned.stdout)["blocked"]
    proc = run_migrator(db, "migrate", "--max-rewrite-size", "100kB", env=db.env(MIGRATOR_SCHEMA="visibility"))
    assert proc.returncode == 6, proc.stderr[-3000:]
    error = events_named(proc.stderr, "run.failed")[-1]["error"]
    assert "rewrites executions_visibility (1k rows," in error
    assert "larger than --max-rewrite-size 100 kB" in error
    assert not [event for event in log_events(proc.stderr) if event.get("event") == "tool.started"]
    assert (db.version_rows(), db.schema_dump()) == before
    assert (
        run_migrator(db, "migrate", "--max-rewrite-size", "1GB", env=db.env(MIGRATOR_SCHEMA="visibility")).returncode
        == 0
    )


def test_progress_reports_the_phase_of_an_index_build(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    """The vendor's CREATE INDEX CONCURRENTLY, held in its wait for an old snapshot, reported from
    pg_stat_progress_create_index every --progress-interval, then finished once the snapshot is gone."""
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=20_000)
    env = db.env(MIGRATOR_SCHEMA="visibility")
    with blocker(db, "snapshot"):
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", "--progress-interval", "0.5", env=env)
        stream = EventStream(proc)
        wait_until(lambda: index_build_waiting(db), 120, "the CREATE INDEX CONCURRENTLY to wait for the snapshot")
        stream.wait_for("ddl.progress", 60, where=lambda event: event.get("phase", "").startswith("waiting for"))
    assert proc.wait(120) == 0, stream.rest()[-3000:]
    stderr = stream.rest()
    builds = [event for event in events_named(stderr, "ddl.progress") if event.get("phase")]
    assert builds, "no ddl.progress with the phase of pg_stat_progress_create_index"
    assert {event["version"] for event in builds} == {newest(schema_dir, "visibility")}
    assert all(event["statement"].startswith("CREATE INDEX CONCURRENTLY") for event in builds)
    assert any(event["phase"].startswith("waiting for") for event in builds)
    assert {"blocks_done", "blocks_total", "tuples_done", "tuples_total"} <= set(builds[0])
    assert db.version_rows() == [(db.name, newest(schema_dir, "visibility"))]
