"""Many migrators at once, and `wait` gating on another process's migration."""

from __future__ import annotations

import time

import pytest

from integration.conftest import RunMigrator, StartMigrator, events_named
from integration.harness import AppDb

pytestmark = pytest.mark.portable


def test_six_concurrent_migrations_apply_each_version_once(app_db: AppDb, start_migrator: StartMigrator) -> None:
    processes = [start_migrator(app_db, "migrate", "--schema", "temporal") for _ in range(6)]
    results = [process.communicate(timeout=300) for process in processes]
    codes = [process.returncode for process in processes]
    assert codes == [0] * 6, [stderr[-1500:] for _, stderr in results]
    assert app_db.version_rows() == [(app_db.name, "1.18")]
    new_versions = [new for _, new in app_db.history()]
    assert len(new_versions) == len(set(new_versions)) == 20  # 0.0 and 1.0 .. 1.18, each once
    runners = [stderr for _, stderr in results if events_named(stderr, "tool.started")]
    assert len(runners) == 1
    assert all(events_named(stderr, "migrate.done")[0]["steps"] == [] for _, stderr in results if stderr not in runners)


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
    assert events_named(stderr, "wait.done")[0]["current_version"] == "1.18"


def test_wait_times_out_with_exit_8(app_db: AppDb, run_migrator: RunMigrator) -> None:
    done = run_migrator(app_db, "wait", "--wait-timeout", "3")
    assert done.returncode == 8, done.stderr[-1500:]
