"""`wait` gating on another process's migration (many migrators at once: test_faults.py)."""

from __future__ import annotations

import time

import pytest

from devtools.databases import AppDb
from integration.support.processes import RunMigrator, StartMigrator, events_named
from integration.support.scenarios import TARGETS

pytestmark = pytest.mark.portable


def test_wait_returns_once_another_process_has_migrated(
    app_db: AppDb, start_migrator: StartMigrator, run_migrator: RunMigrator
) -> None:
    waiter = start_migrator(app_db, "wait", "--schema", "temporal", "--wait-timeout", "120")
    time.sleep(3)
    assert waiter.poll() is None, "wait returned before the schema existed"
    done = run_migrator(app_db, "migrate", "--schema", "temporal")
    assert done.returncode == 0
    _, stderr = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, stderr[-1500:]
    assert events_named(stderr, "wait.pending")
    assert events_named(stderr, "wait.done")[0]["current_version"] == TARGETS["temporal"]


def test_wait_times_out_with_exit_8(app_db: AppDb, run_migrator: RunMigrator) -> None:
    done = run_migrator(app_db, "wait", "--wait-timeout", "3")
    assert done.returncode == 8, done.stderr[-1500:]
