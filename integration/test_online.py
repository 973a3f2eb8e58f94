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
  blocker outlasts `--ddl-retry-timeout` it exits 7 naming it (with either of the tool's drivers); with the tools
  of v1.29.1 (lib/pq 1.10 prints no SQLSTATE, pgx 5.7 ignores PGOPTIONS) and of the pinned release, on both
  plugins, a statement that gave up on its lock is retried. Stopped by SIGTERM (repeated or not) or SIGKILL while
  the tool's statement waits, it leaves no statement queued on the server, also with the progress watcher's and
  the stopper's own sessions gone; a run cancels its own tool sessions only.
- `--max-rewrite-size` refuses (exit 6) before any DDL.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
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
from migrator.db.activity import cancel_statements
from migrator.db.session import TOOL_APPLICATION_NAME, tool_application_name
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


def plain_env(db: AppDb, **overrides: str) -> dict[str, str]:
    """The migrator's environment for these tests, which are about the vendor's statements run plain (bounded
    lock waits, progress, the size guard): the online path is tested on its own."""
    return db.env(MIGRATOR_REWRITE_MODE="plain", **overrides)


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
        env = plain_env(db, TEMPORAL_SQL_TOOL=str(tool), MIGRATOR_SCHEMA_DIR=str(tree), MIGRATOR_SCHEMA="visibility")
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
    env = plain_env(db, MIGRATOR_SCHEMA="temporal")
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


def tool_sessions(db: AppDb, application: str = f"{TOOL_APPLICATION_NAME}/%") -> list[tuple[int, str, str | None]]:
    """Any run's tool sessions (or the sessions named ``application``, a LIKE pattern) still doing something on
    the server: (pid, state, wait event type). Read from the maintenance database, so it never takes a slot of
    the test database's connection limit."""
    with db.server.admin_connect() as conn:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity"
            " WHERE datname = %s AND application_name LIKE %s AND state <> 'idle'",
            (db.name, application),
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


# The DDL waits 2 s per attempt: longer than the watcher's 0.5 s poll, so each attempt's blocker is seen.
@pytest.mark.parametrize("kind", ["lock", "snapshot"])
def test_blocked_ddl_is_retried_and_converges_to_a_clean_install(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path, kind: str
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir)
    env = plain_env(db, MIGRATOR_SCHEMA="visibility")
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


@pytest.mark.parametrize("plugin", ["postgres12", "postgres12_pgx"])  # lib/pq and pgx both send startup parameters
def test_a_blocker_outlasting_the_retry_time_is_named_in_exit_7(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path, plugin: str
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=100)
    before = db.version_rows()
    env = plain_env(db, MIGRATOR_SCHEMA="visibility", SQL_PLUGIN=plugin)
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


def release_store(make_db: MakeDb, tool: Path, schema: Path) -> AppDb:
    """A visibility store of ``tool``'s release one version below its newest (whose DDL locks the table)."""
    db = make_db()
    bring_to(tool, db, schema, "visibility", previous_version(schema, "visibility"))
    with db.connect() as conn:
        fill(conn, "executions_visibility", 100)
    return db


# lib/pq prints "(55P03)" from v1.12 on, not in v1.10.9 (v1.29.1's); pgx v5.7.2 (v1.29.1's) ignores PGOPTIONS.
@pytest.mark.parametrize("plugin", ["postgres12", "postgres12_pgx"])
@pytest.mark.parametrize("tool_release", [FIRST_RELEASE, "pinned"])
def test_a_tool_statement_that_gave_up_on_its_lock_is_retried_with_either_release_and_driver(
    make_db: MakeDb,
    start_migrator: StartMigrator,
    temporal_tool: Path,
    schema_dir: Path,
    tool_release: str,
    plugin: str,
) -> None:
    tool, schema = (temporal_tool, schema_dir) if tool_release == "pinned" else release(tool_release)
    db = release_store(make_db, tool, schema)
    env = plain_env(
        db,
        MIGRATOR_SCHEMA="visibility",
        SQL_PLUGIN=plugin,
        TEMPORAL_SQL_TOOL=str(tool),
        MIGRATOR_SCHEMA_DIR=str(schema),
    )
    with blocker(db, "lock") as pid:
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "2", "--ddl-retry-timeout", "120", env=env)
        stream = EventStream(proc)
        retry = stream.wait_for("ddl.retrying", timeout=120)  # the tool's statement gave up on its lock: retried
    proc.wait(timeout=180)
    stderr = stream.rest()
    assert proc.returncode == 0, stderr[-3000:]
    assert "exit code 1" in retry["cause"], retry
    blocked = events_named(stderr, "ddl.blocked")
    assert pid in {b["pid"] for event in blocked for b in event["blockers"]}, blocked
    assert {event["version"] for event in blocked} == {newest(schema, "visibility")}
    assert pid in {b["pid"] for b in retry["blockers"]}, retry
    clean = make_db()
    bring_to(tool, clean, schema, "visibility", None)
    assert db.schema_dump() == clean.schema_dump()


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
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", env=plain_env(db, MIGRATOR_SCHEMA="visibility"))
        wait_until(lambda: any(wait == "Lock" for _, _, wait in tool_sessions(db)), 60, "the tool's ALTER to queue")
        proc.send_signal(stop)
        proc.communicate(timeout=30)
        wait_until(lambda: tool_sessions(db) == [], 10, "the server to drop the tool's queued ALTER")
    assert proc.returncode == (143 if stop == signal.SIGTERM else -signal.SIGKILL)
    time.sleep(1)
    assert db.version_rows() == before
    with db.connect() as conn:
        assert columns_of(conn, "executions_visibility") == columns, "the queued ALTER was applied after the stop"


def terminate(db: AppDb, application: str) -> int:
    """End ``db``'s sessions named ``application`` (a proxy, a connection limit, an operator); how many."""
    with db.server.admin_connect() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (db.name, application),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def test_a_stop_cancels_the_tools_queued_statement_without_the_watcher_or_the_stoppers_own_connection(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    """The stop path depends on no courtesy connection: with the progress watcher's and the stopper's own sessions
    gone, SIGTERM still cancels the tool's queued ALTER in the server (from the lock session)."""
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=100)
    before = db.version_rows()
    with blocker(db, "lock"):
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", env=plain_env(db, MIGRATOR_SCHEMA="visibility"))
        stream = EventStream(proc)
        wait_until(lambda: any(wait == "Lock" for _, _, wait in tool_sessions(db)), 60, "the tool's ALTER to queue")
        queued = {pid for pid, _, wait in tool_sessions(db) if wait == "Lock"}
        assert terminate(db, "temporal-migrator-watch") + terminate(db, "temporal-migrator-stop") == 2
        stream.wait_for("ddl.watch_failed", timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        remaining = tool_sessions(db)
    rest = stream.rest()
    cancelled = events_named(rest, "ddl.cancelled")
    assert len(cancelled) == 1, rest[-3000:]
    assert queued <= set(cancelled[0]["pids"])
    assert cancelled[0]["connection"] in ("lock session", "new")
    assert remaining == []  # cancelled before the migrator exited, not left for the server's own checks
    assert db.version_rows() == before


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie not yet reaped has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_second_sigterm_during_cleanup_does_not_cut_it_short(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    """Kubernetes or an impatient user repeats the signal: the cleanup still stops the tool, cancels its queued
    ALTER and releases the lock, and the run ends with one run.failed line."""
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=100)
    before = db.version_rows()
    with blocker(db, "lock"):
        proc = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", env=plain_env(db, MIGRATOR_SCHEMA="visibility"))
        stream = EventStream(proc)
        tool = stream.wait_for("tool.started")
        wait_until(lambda: any(wait == "Lock" for _, _, wait in tool_sessions(db)), 60, "the tool's ALTER to queue")
        queued = {pid for pid, _, wait in tool_sessions(db) if wait == "Lock"}
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not running(tool["pid"]), 30, "the cleanup to stop the tool")
        proc.send_signal(signal.SIGTERM)  # while the cleanup cancels the queued ALTER and releases the lock
        proc.send_signal(signal.SIGINT)
        # 143; or, on a loaded machine where the cleanup was over before the repeat came, killed by it (-15,
        # which Kubernetes reports as 143 too) after everything below was done
        assert proc.wait(30) in (143, -signal.SIGTERM)
        remaining = tool_sessions(db)
    rest = stream.rest()
    assert "Traceback" not in rest
    assert [event["exit_code"] for event in events_named(rest, "run.failed")] == [143]
    assert queued <= set(events_named(rest, "ddl.cancelled")[0]["pids"])
    assert events_named(rest, "lock.released")
    assert remaining == []
    assert db.version_rows() == before


def test_a_run_cancels_its_own_tool_sessions_only(make_db: MakeDb) -> None:
    """Another run's tool sessions (another lock session's tag) and a user's session that took the name the tool
    once shared by every run are left alone; the run's own are cancelled."""
    db = make_db()
    with db.connect() as lock_session:
        own_pid = lock_session.info.backend_pid
        names = {
            "own": tool_application_name(own_pid),
            "other run": tool_application_name(own_pid + 100_000),  # beyond any live pid: no run has it
            "user": TOOL_APPLICATION_NAME,
        }
        sleepers = {who: Sleeper(db, name) for who, name in names.items()}
        try:
            wait_until(lambda: all(s.active() for s in sleepers.values()), 30, "the sleeping statements to run")
            with db.connect() as stopper:
                rows = lambda query, params: stopper.execute(query, params).fetchall()  # noqa: E731
                assert cancel_statements(rows, own_pid) == [sleepers["own"].pid]
            assert [who for who, sleeper in sleepers.items() if sleeper.active()] == ["other run", "user"]
        finally:
            for sleeper in sleepers.values():
                sleeper.stop()


class Sleeper:
    """A session named ``application`` running a long statement on a thread, as a tool's DDL would."""

    def __init__(self, db: AppDb, application: str) -> None:
        self.db = db
        self.conn = psycopg.connect(
            host=db.server.host, port=db.server.port, user=db.user, password=db.password, dbname=db.name,
            application_name=application, autocommit=True,
        )  # fmt: skip
        self.pid = self.conn.info.backend_pid
        self.thread = threading.Thread(target=self._sleep, daemon=True)
        self.thread.start()

    def _sleep(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("SELECT pg_sleep(60)")

    def active(self) -> bool:
        with self.db.server.admin_connect() as conn:
            row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (self.pid,)).fetchone()
        return row == ("active",)

    def stop(self) -> None:
        with self.db.server.admin_connect() as conn:
            conn.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
        self.thread.join(10)
        self.conn.close()


def test_max_rewrite_size_refuses_before_any_ddl(
    make_db: MakeDb, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=1_000)
    before = (db.version_rows(), db.schema_dump())
    planned = run_migrator(db, "plan", "--max-rewrite-size", "100kB", env=plain_env(db, MIGRATOR_SCHEMA="visibility"))
    assert planned.returncode == 6, planned.stderr[-3000:]  # plan gates a pipeline as migrate would stop
    assert "larger than --max-rewrite-size 100 kB" in json.loads(planned.stdout)["blocked"]
    proc = run_migrator(db, "migrate", "--max-rewrite-size", "100kB", env=plain_env(db, MIGRATOR_SCHEMA="visibility"))
    assert proc.returncode == 6, proc.stderr[-3000:]
    error = events_named(proc.stderr, "run.failed")[-1]["error"]
    assert "rewrites executions_visibility (1k rows," in error
    assert "larger than --max-rewrite-size 100 kB" in error
    assert not [event for event in log_events(proc.stderr) if event.get("event") == "tool.started"]
    assert (db.version_rows(), db.schema_dump()) == before
    assert (
        run_migrator(
            db, "migrate", "--max-rewrite-size", "1GB", env=plain_env(db, MIGRATOR_SCHEMA="visibility")
        ).returncode
        == 0
    )


def test_progress_reports_the_phase_of_an_index_build(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    """The vendor's CREATE INDEX CONCURRENTLY, held in its wait for an old snapshot, reported from
    pg_stat_progress_create_index every --progress-interval, then finished once the snapshot is gone."""
    db = blocked_store(make_db, temporal_tool, schema_dir, rows=20_000)
    env = plain_env(db, MIGRATOR_SCHEMA="visibility")
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
