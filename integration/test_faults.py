"""Faults: many migrators at once, kill -9 and SIGTERM mid-run, and the password never leaking."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.databases import AppDb, MakeDb
from devtools.pins import Store
from integration.support.processes import EventStream, RunMigrator, StartMigrator, events_named
from integration.support.scenarios import TARGETS, half_apply, reference_dump
from migrator.run.lock import lock_key


def _start_until_update_runs(
    start_migrator: StartMigrator, db: AppDb
) -> tuple[subprocess.Popen[str], EventStream, dict[str, Any]]:
    """Start `migrate` on a fresh visibility store; return once the tool's update-schema (the long step) runs."""
    process = start_migrator(db, "migrate", "--schema", "visibility")
    stream = EventStream(process)
    stream.wait_for("tool.started")  # setup-schema
    return process, stream, stream.wait_for("tool.started")


def _lock_holders(db: AppDb) -> int:
    key = lock_key(db.name)
    with db.server.admin_connect(db.name) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = (%(k)s >> 32) & 4294967295 AND objid::bigint = %(k)s & 4294967295",
            {"k": key},
        ).fetchone()
    return int(row[0]) if row else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_until(predicate: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.portable
@pytest.mark.parametrize("half_applied", [False, True], ids=["fresh", "half-applied"])
def test_sixteen_concurrent_migrations(
    half_applied: bool, app_db: AppDb, start_migrator: StartMigrator, schema_dir: Path
) -> None:
    if half_applied:
        half_apply(app_db, schema_dir, "temporal", "1.0", 3)
    processes = [start_migrator(app_db, "migrate", "--schema", "temporal") for _ in range(16)]
    outputs = [process.communicate(timeout=600)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 16, [out[-800:] for out in outputs]
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]
    versions = [new for _, new in app_db.history()]
    assert len(versions) == len(set(versions)) == 21  # 0.0 and 1.0 .. 1.19, each once
    workers = [out for out in outputs if events_named(out, "migrate.done")[0]["steps"]]
    assert len(workers) == 1, "exactly one process may change the database"
    idle = [out for out in outputs if out is not workers[0]]
    assert all(events_named(out, "tool.started") == [] for out in idle)
    assert any(events_named(out, "lock.waiting") for out in idle)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_stopped_run_leaves_no_tool_and_no_lock_and_the_next_run_converges(
    stop: signal.Signals,
    app_db: AppDb,
    make_db: MakeDb,
    start_migrator: StartMigrator,
    run_migrator: RunMigrator,
    schema_dir: Path,
) -> None:
    """kill -9: the tool dies with the migrator (parent-death signal) and the lock with its session. SIGTERM: the
    tool is stopped first, one run.failed line, exit 143."""
    store: Store = "visibility"
    process, stream, tool = _start_until_update_runs(start_migrator, app_db)
    process.send_signal(stop)
    if stop is signal.SIGTERM:
        assert process.wait(30) == 143
        assert not _alive(tool["pid"])
        assert stream.wait_for("run.failed")["exit_code"] == 143
    else:
        process.wait(10)
    assert _wait_until(lambda: not _alive(tool["pid"])), "the tool outlived the stopped migrator"
    assert _wait_until(lambda: _lock_holders(app_db) == 0), "the lock outlived the stopped migrator"
    done = run_migrator(app_db, "migrate", "--schema", store)
    assert done.returncode == 0, done.stderr[-2000:]
    assert app_db.version_rows() == [(app_db.name, TARGETS[store])]
    assert app_db.schema_dump() == reference_dump(make_db, schema_dir, store)


def test_password_is_in_no_command_line_while_the_tool_runs(app_db: AppDb, start_migrator: StartMigrator) -> None:
    process, stream, tool = _start_until_update_runs(start_migrator, app_db)
    secret = app_db.password.encode()
    migrator_cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
    tool_cmdline = Path(f"/proc/{tool['pid']}/cmdline").read_bytes()
    tool_environ = Path(f"/proc/{tool['pid']}/environ").read_bytes()
    assert secret not in migrator_cmdline
    assert secret not in tool_cmdline
    assert secret not in tool_environ  # the tool's URL escaping would break it: a password file instead
    passfile = next(item for item in tool_environ.split(b"\0") if item.startswith(b"PGPASSFILE="))
    assert Path(passfile.split(b"=", 1)[1].decode()).stat().st_mode & 0o077 == 0
    assert process.wait(120) == 0
    assert app_db.password not in stream.rest()


@pytest.mark.parametrize("command", ["status", "plan", "migrate", "wait"])
def test_password_is_in_no_output_of_any_command(command: str, app_db: AppDb, run_migrator: RunMigrator) -> None:
    run_migrator(app_db, "migrate", "--schema", "temporal")
    done = run_migrator(app_db, command, "--schema", "temporal", "--log-level", "debug")
    assert done.returncode == 0, done.stderr[-2000:]
    assert app_db.password not in done.stdout + done.stderr
