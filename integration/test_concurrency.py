"""`wait` gating on another process's migration (many migrators at once: test_faults.py)."""

from __future__ import annotations

import pytest

from devtools.databases import AppDb
from integration.support.processes import EventStream, RunMigrator, StartMigrator, events_named
from integration.support.scenarios import TARGETS

pytestmark = pytest.mark.portable


def test_wait_returns_once_another_process_has_migrated(
    app_db: AppDb, start_migrator: StartMigrator, run_migrator: RunMigrator
) -> None:
    waiter = start_migrator(app_db, "wait", "--schema", "temporal", "--wait-timeout", "180")
    stream = EventStream(waiter)
    stream.wait_for("wait.pending", 60)  # it has seen the store missing
    assert waiter.poll() is None, "wait returned before the schema existed"
    done = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert done.returncode == 0
    assert waiter.wait(60) == 0, stream.rest()[-1500:]
    stderr = stream.rest()
    assert events_named(stderr, "wait.done")[0]["current_version"] == TARGETS["temporal"]


def test_wait_times_out_with_exit_8(app_db: AppDb, run_migrator: RunMigrator) -> None:
    done = run_migrator(app_db, "wait", "--wait-timeout", "3")
    assert done.returncode == 8, done.stderr[-1500:]
