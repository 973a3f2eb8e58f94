"""`status`, `plan` and `wait` never wait on a table lock: with ACCESS EXCLUSIVE held on the visibility table of
a store that is behind, they answer at once, the table's size unknown and the lock's holder named."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.databases import AppDb
from integration.support.processes import RunMigrator
from integration.support.scenarios import tool_to

LOCKED_TABLE = "executions_visibility"
HOLDER = "operator-holding-a-lock"
# How long the holder keeps its lock at most; each command must answer well within it.
HOLD_SECONDS = 120


def statements_on(document: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [item for version in document["impact"] for item in version["statements"] if item["table"] == table]


@pytest.mark.parametrize("command", ["status", "plan"])
def test_status_and_plan_report_a_locked_table_without_waiting_for_it(
    command: str, app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    tool_to(app_db, schema_dir, "visibility", "1.9")
    with app_db.server.admin_connect(app_db.name) as holder:
        holder.execute("SELECT set_config('application_name', %s, false)", (HOLDER,))
        holder.autocommit = False
        holder.execute(f"SET LOCAL statement_timeout = '{HOLD_SECONDS}s'")  # the lock ends even if the test hangs
        holder.execute(f"LOCK TABLE {LOCKED_TABLE} IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        started = time.monotonic()
        done = run_migrator(app_db, command, "--schema", "visibility", "--output", "json", timeout=HOLD_SECONDS / 2)
        elapsed = time.monotonic() - started
        holder.rollback()
    assert done.returncode == 0, done.stderr[-2000:]
    assert elapsed < HOLD_SECONDS / 4
    locked = statements_on(json.loads(done.stdout), LOCKED_TABLE)
    assert locked, "the pending versions change the locked table"
    assert {(item["bytes"], item["locked_by"]) for item in locked} == {(None, f"pid {pid} ({HOLDER})")}


def test_wait_reports_a_locked_version_table_instead_of_waiting_for_it(
    app_db: AppDb, run_migrator: RunMigrator, schema_dir: Path
) -> None:
    """The version row cannot be read while the lock is held: `wait` keeps polling and gives up at its own
    --wait-timeout (exit 8, the README's "wait timed out"), naming the lock timeout, not at the holder's end."""
    tool_to(app_db, schema_dir, "visibility", "1.9")
    wait_timeout = 5
    with app_db.server.admin_connect(app_db.name) as holder:
        holder.autocommit = False
        holder.execute(f"SET LOCAL statement_timeout = '{HOLD_SECONDS}s'")
        holder.execute("LOCK TABLE schema_version IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        done = run_migrator(
            app_db, "wait", "--schema", "visibility", "--wait-timeout", str(wait_timeout), timeout=HOLD_SECONDS / 2
        )
        elapsed = time.monotonic() - started
        holder.rollback()
    assert done.returncode == 8, done.stderr[-2000:]
    assert elapsed < HOLD_SECONDS / 4
    assert "SQLSTATE 55P03" in done.stderr
