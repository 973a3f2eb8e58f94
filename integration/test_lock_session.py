"""The lock session's lifetime on the real server: nothing may end it quietly while the tool does DDL, and
if the server ends it anyway, no further DDL runs. Ctrl-C ends a run like SIGTERM.

Each test is a scenario of issue 9 that went wrong on main at b218e95 (exit code then: in the docstring).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from psycopg import sql

from devtools.databases import AppDb
from integration.support.processes import EventStream, RunMigrator, StartMigrator, events_named
from integration.support.scenarios import TARGETS, half_apply, held_until, wrapped_tool


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


def test_a_lock_session_the_server_ends_stops_the_run_before_any_further_ddl(
    app_db: AppDb, start_migrator: StartMigrator, temporal_tool: Path, tmp_path: Path
) -> None:
    """main: exit 1 with a traceback from the next query (and the lock was gone while the tool ran)."""
    gate = tmp_path / "gate"  # the tool starts its work only once the lock session is gone
    slow = wrapped_tool(tmp_path, temporal_tool, before=held_until(gate))
    process = start_migrator(app_db, "migrate", "--schema", "temporal", env=app_db.env(TEMPORAL_SQL_TOOL=str(slow)))
    stream = EventStream(process)
    assert stream.wait_for("tool.started")["command"][0] == "setup-schema"
    with app_db.server.admin_connect() as conn:  # a proxy's idle timeout, pg_terminate_backend, a failover...
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'temporal-migrator'",
            (app_db.name,),
        ).fetchall()
    gate.touch()
    assert ended == [(True,)]
    assert process.wait(60) == 3
    rest = stream.rest()
    failed = events_named(rest, "run.failed")[0]
    assert "lock on database" in failed["error"]
    assert "was lost" in failed["error"]
    assert [step["action"] for step in failed["completed_steps"]] == ["setup-schema"]
    assert len(events_named(rest, "tool.started")) == 1  # setup-schema only: update-schema never started
    assert app_db.version_rows() == [(app_db.name, "0.0")]


def test_ctrl_c_during_migrate_stops_the_tool_and_ends_with_one_line_and_exit_130(
    app_db: AppDb, start_migrator: StartMigrator, run_migrator: RunMigrator, temporal_tool: Path, tmp_path: Path
) -> None:
    """main: a Python traceback (KeyboardInterrupt) instead of one run.failed line."""
    slow = wrapped_tool(tmp_path, temporal_tool, before=held_until(tmp_path / "never"))  # runs until stopped
    terminated = tmp_path / "termination-log"
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
