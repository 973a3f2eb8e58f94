"""The lock session's lifetime on the real server: nothing may end it quietly while the tool does DDL, and
if the server ends it anyway, the tool in flight is stopped within 2 s and its statement cancelled. Ctrl-C ends
a run like SIGTERM.

Each test is a scenario of issue 9 that went wrong on main at b218e95 (exit code then: in the docstring).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from psycopg import sql

from devtools.databases import AppDb, MakeDb
from integration.support.processes import EventStream, RunMigrator, StartMigrator, bring_to, events_named
from integration.support.scenarios import TARGETS, half_apply, held_until, wrapped_tool
from migrator.db.session import TOOL_APPLICATION_NAME
from migrator.source.tree import load_vendor_schema

T = TypeVar("T")


def previous_store_version(schema_dir: Path) -> str:
    """One below the newest visibility version (whose ALTER on executions_visibility a reader's lock holds up)."""
    return load_vendor_schema(schema_dir, "visibility").versions[-2].name


def store_columns(db: AppDb) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'executions_visibility' ORDER BY column_name"
        ).fetchall()
    return [name for (name,) in rows]


def tool_sessions_waiting(db: AppDb) -> list[int]:
    """Backend pids of any run's tool sessions waiting for a lock."""
    with db.server.admin_connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s"
            " AND wait_event_type = 'Lock'",
            (db.name, f"{TOOL_APPLICATION_NAME}/%"),
        ).fetchall()
    return [pid for (pid,) in rows]


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, not yet reaped, has stopped running)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_value(probe: Callable[[], T], timeout: float, what: str) -> T:
    """``probe()`` once it is truthy, polled every 50 ms up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


def test_idle_session_timeout_cannot_end_the_lock_session_during_a_slow_tool_run(
    app_db: AppDb, run_migrator: RunMigrator, temporal_tool: Path, tmp_path: Path
) -> None:
    """main: the server ended the lock session mid-run (the lock was gone), then exit 1 with a traceback."""
    with app_db.server.admin_connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET idle_session_timeout = '1s'").format(sql.Identifier(app_db.name)))
    slow = wrapped_tool(tmp_path, temporal_tool, before="sleep 3")
    done = run_migrator(app_db, "migrate", "--schema", "temporal", env=app_db.env(TEMPORAL_SQL_TOOL=str(slow)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]
    assert [step["action"] for step in events_named(done.stderr, "migrate.done")[0]["steps"]] == [
        "setup-schema",
        "update-schema",
    ]


def test_a_lock_session_the_server_ends_stops_the_tool_in_flight_within_two_seconds(
    make_db: MakeDb, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    """main: the tool went on without the lock (its queued ALTER could run while a second migrator held it)."""
    db = make_db()
    bring_to(temporal_tool, db, schema_dir, "visibility", previous_store_version(schema_dir))
    columns = store_columns(db)
    with db.server.admin_connect(db.name) as holder:
        holder.autocommit = False
        holder.execute("SELECT count(*) FROM executions_visibility")  # a reader: the tool's ALTER queues behind it
        process = start_migrator(db, "migrate", "--ddl-lock-timeout", "0", env=db.env(MIGRATOR_SCHEMA="visibility"))
        stream = EventStream(process)
        tool_pid = stream.wait_for("tool.started")["pid"]
        queued = wait_for_value(lambda: tool_sessions_waiting(db), 60, "the tool's ALTER to queue")
        with db.server.admin_connect() as conn:  # a proxy's idle timeout, pg_terminate_backend, a failover...
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'temporal-migrator'",
                (db.name,),
            ).fetchall()
        lost = time.monotonic()
        assert ended == [(True,)]
        wait_for_value(lambda: not alive(tool_pid), 10, "the tool to be stopped")
        stopped_after = time.monotonic() - lost
        assert process.wait(60) == 3
        assert tool_sessions_waiting(db) == []  # its queued ALTER was cancelled, not left for the reader's end
        holder.rollback()
    rest = stream.rest()
    assert stopped_after < 2, f"the tool ran {stopped_after:.1f}s after the lock was lost"
    failed = events_named(rest, "run.failed")[0]
    assert "was lost while the tool ran" in failed["error"]
    assert failed["completed_steps"] == []
    assert set(queued) <= set(events_named(rest, "ddl.cancelled")[0]["pids"])
    assert db.version_rows() == [(db.name, previous_store_version(schema_dir))]
    assert store_columns(db) == columns


def test_ctrl_c_during_migrate_stops_the_tool_and_ends_with_one_line_and_exit_130(
    app_db: AppDb, start_migrator: StartMigrator, run_migrator: RunMigrator, temporal_tool: Path, tmp_path: Path
) -> None:
    """main: a Python traceback (KeyboardInterrupt) instead of one run.failed line."""
    slow = wrapped_tool(tmp_path, temporal_tool, before=held_until(tmp_path / "never"))  # runs until stopped
    terminated = tmp_path / "termination-log"
    terminated.touch()  # Kubernetes makes the file; the migrator only writes into it
    env = app_db.env(TEMPORAL_SQL_TOOL=str(slow), MIGRATOR_TERMINATION_LOG=str(terminated))
    process = start_migrator(app_db, "migrate", "--schema", "temporal", env=env)
    stream = EventStream(process)
    stream.wait_for("tool.started")
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 130
    rest = stream.rest()
    assert "Traceback" not in rest
    lines = [line for line in rest.splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), rest[-2000:]
    failed = events_named(rest, "run.failed")
    assert len(failed) == 1
    assert "SIGINT" in failed[0]["error"]
    assert json.loads(terminated.read_text())["exit_code"] == 130
    again = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert again.returncode == 0, again.stderr[-2000:]


def test_sigterm_during_a_repair_statement_cancels_it_in_the_server(
    app_db: AppDb, start_migrator: StartMigrator, schema_dir: Path
) -> None:
    """main: the statement went on in the server after the migrator (and its lock) were gone."""
    half_apply(app_db, schema_dir, "temporal", "1.4", 1)  # the repair runs v1.4's second ALTER itself
    with app_db.server.admin_connect(app_db.name) as holder:
        holder.autocommit = False
        holder.execute("SELECT * FROM cluster_metadata")  # a reader's lock: the ALTER waits behind it
        process = start_migrator(app_db, "migrate", "--schema", "temporal")
        stream = EventStream(process)
        assert stream.wait_for("repair.statement")["outcome"] == "skipped"
        assert stream.wait_for("repair.statement")["outcome"] == "executed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 143
        holder.rollback()
    with app_db.server.admin_connect(app_db.name) as conn:
        busy = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'temporal-migrator'",
            (app_db.name,),
        ).fetchone()
        column = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'cluster_metadata' AND column_name = 'immutable_data_encoding'"
        ).fetchone()
    assert busy == (0,)
    assert column == (1,)  # the cancelled ALTER did not run once the reader let go
