"""The online rewrite engine on a real visibility store at 1.12 with rows and live writes (the executor's
online-rewrite and abort-online steps, run by `integration.support.online_run` in a process of its own).

- 1.12 → 1.14 in one shadow pass under live writes: every committed write is kept (a witness row written in the
  same transaction as each write, compared row by row), and the schema is `pg_dump`-identical to a clean install
  at 1.14, down to the attnums and the table's operator extras (comments, reloptions, statistics targets, column
  options, replica identity, CLUSTER ON, a publication with a row filter, grants).
- Killed -9 in each phase, then run again: it resumes from the recorded phase and converges to the same result.
- Killed during the index builds, then aborted: the table is as it was, and no trace is left in the catalog.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.data import fill
from devtools.databases import AppDb, MakeDb
from devtools.witness import LOCK_WAIT_GOAL, Load, compare, drop_witness
from integration.support.processes import bring_to, log_events
from migrator.core.online import WORK_SCHEMA

TABLE = "executions_visibility"
ROWS = 3_000
START = "1.12"
VERSIONS = ("1.13", "1.14")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Extras an operator may have put on the table: each must survive the rewrite exactly as the plain path keeps it.
EXTRAS = (
    f"COMMENT ON TABLE {TABLE} IS 'visibility, with an operator''s note'",
    f"COMMENT ON COLUMN {TABLE}.memo IS 'memo column'",
    "COMMENT ON INDEX by_status IS 'an index comment'",
    f"ALTER TABLE {TABLE} SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05, toast.autovacuum_enabled = off)",
    f"ALTER TABLE {TABLE} ALTER COLUMN workflow_type_name SET STATISTICS 500",
    f"ALTER TABLE {TABLE} ALTER COLUMN status SET (n_distinct = 8)",
    f"ALTER TABLE {TABLE} ALTER COLUMN memo SET STORAGE EXTERNAL",
    f"ALTER TABLE {TABLE} REPLICA IDENTITY USING INDEX {TABLE}_pkey",
    f"ALTER TABLE {TABLE} CLUSTER ON by_status",
    f"GRANT SELECT ON {TABLE} TO PUBLIC",
    f"GRANT UPDATE (memo) ON {TABLE} TO PUBLIC",
    f"CREATE PUBLICATION visibility_feed FOR TABLE {TABLE}",
)
ROW_FILTER_SINCE = 15  # a publication's row filter (on the replica identity's columns, as updates are published)
_TRACES = """
SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'temporal\\_migrator\\_%%'),
       (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'temporal\\_migrator\\_%%'),
       (SELECT count(*) FROM pg_proc WHERE proname LIKE 'temporal\\_migrator\\_%%'),
       (SELECT count(*) FROM pg_class WHERE relname = %s)
"""
_CATALOG = """
SELECT a.attnum, a.attname, a.attisdropped, a.attlen, a.attalign, format_type(a.atttypid, a.atttypmod),
       a.attnotnull, a.attgenerated, a.attstorage, a.attacl::text,
       c.relacl::text, c.reloptions::text, t.reloptions::text, c.relreplident
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 ORDER BY a.attnum
"""


def store_at_start(make_db: MakeDb, temporal_tool: Path, schema_dir: Path, *, rows: int = ROWS) -> AppDb:
    db = make_db()
    bring_to(temporal_tool, db, schema_dir, "visibility", START)
    with db.connect() as conn:
        for statement in EXTRAS:
            conn.execute(statement)
        if db.server.major >= ROW_FILTER_SINCE:
            conn.execute(f"CREATE PUBLICATION filtered_feed FOR TABLE {TABLE} WHERE (namespace_id <> '')")
        if rows:
            fill(conn, TABLE, rows)
    return db


_CLEAN: dict[str, tuple[str, Any]] = {}


def clean_install(make_db: MakeDb, temporal_tool: Path, schema_dir: Path) -> tuple[str, Any]:
    """The plain path's result (the tool's update from 1.12 to 1.14 with the same extras): dump and catalog."""
    if "plain" not in _CLEAN:
        db = store_at_start(make_db, temporal_tool, schema_dir, rows=0)
        bring_to(temporal_tool, db, schema_dir, "visibility", VERSIONS[-1])
        _CLEAN["plain"] = (db.schema_dump(), catalog(db))
    return _CLEAN["plain"]


def catalog(db: AppDb) -> Any:
    with db.server.admin_connect(db.name) as conn:
        return conn.execute(_CATALOG, (TABLE,)).fetchall()


def traces(db: AppDb) -> tuple[int, ...]:
    """(work schemas, our triggers, our functions, tables named like the store's): (0, 0, 0, 1) when clean."""
    with db.server.admin_connect(db.name) as conn:
        row = conn.execute(_TRACES, (TABLE,)).fetchone()
    assert row is not None
    return tuple(row)


def state(db: AppDb) -> tuple[str, int, int] | None:
    with db.server.admin_connect(db.name) as conn:
        try:
            row = conn.execute(f"SELECT phase, rows_copied, indexes_built FROM {WORK_SCHEMA}.state").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else (str(row[0]), int(row[1]), int(row[2]))


def start_engine(db: AppDb, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "integration.support.online_run", TABLE, START, *args],
        env=db.env(MIGRATOR_SCHEMA="visibility", MIGRATOR_PROGRESS_INTERVAL="0.5", **env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> list[dict[str, Any]]:
    _, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr[-4000:]
    return log_events(stderr)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the engine ended ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def live_writes(db: AppDb, lock_wait: float | None = None) -> Iterator[Load]:
    """``lock_wait``: a write that waits this long for a lock fails (the kill tests hold the swap's lock longer)."""
    writers = Load(db.connect, lock_wait=lock_wait)
    writers.start()
    try:
        yield writers
    finally:
        writers.stop()


def worst(writers: Load) -> float:
    """Seconds of the longest query of the live load so far (a stall shows here)."""
    return max((seconds for _, seconds in writers.samples), default=0.0)


def check_converged(db: AppDb, writers: Load, clean: tuple[str, Any]) -> None:
    writers.stop()
    assert writers.writes > 50, writers.writes
    # none failed: the trigger is on every write's path (and with a lock_wait, none waited that long for a lock)
    assert writers.errors == [], writers.errors[:5]
    with db.connect() as conn:
        comparison = compare(conn, writers.columns)
        assert comparison.identical, comparison.summary()
        drop_witness(conn)
    assert traces(db) == (0, 0, 0, 1)
    assert (db.schema_dump(), catalog(db)) == clean
    assert db.version_rows() == [(db.name, VERSIONS[-1])]


@pytest.mark.portable
def test_online_rewrite_keeps_every_write_and_matches_a_clean_install(
    make_db: MakeDb, temporal_tool: Path, schema_dir: Path
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = store_at_start(make_db, temporal_tool, schema_dir)
    with live_writes(db, LOCK_WAIT_GOAL) as writers:
        time.sleep(1)
        started = time.monotonic()
        events = finish(start_engine(db, *VERSIONS))
        seconds = time.monotonic() - started
        time.sleep(0.5)
        check_converged(db, writers, clean)
    swapped = [event for event in events if event["event"] == "online.swapped"]
    assert len(swapped) == 1, events[-5:]
    phases = {event.get("online") for event in events if event["event"] == "ddl.progress"}
    assert {"copy", "index", "catchup"} <= phases, phases
    figures = {"rows": ROWS, "seconds": round(seconds, 1), "commits": writers.writes, "worst_query": worst(writers)}
    print(json.dumps({**figures, **swapped[0]}))


def test_a_blocker_holds_the_swap_off_without_stalling_the_writes(
    make_db: MakeDb, temporal_tool: Path, schema_dir: Path
) -> None:
    """A session holds ACCESS SHARE on the table (an open transaction after a SELECT) as the swap begins: the
    attempts are postponed or give up after half the tolerated stall, so writes wait at most about that long;
    the swap happens once the blocker ends."""
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = store_at_start(make_db, temporal_tool, schema_dir)
    with live_writes(db, LOCK_WAIT_GOAL) as writers, contextlib.ExitStack() as stack:
        stack.enter_context(db.holding(f"SELECT 1 FROM {TABLE} LIMIT 1"))
        proc = start_engine(db, *VERSIONS)
        wait_until(lambda: (state(db) or ("",))[0] == "swap", 300, "the swap", proc)
        time.sleep(2)
        stack.close()
        events = finish(proc)
        check_converged(db, writers, clean)
    attempts = [event for event in events if event["event"] == "ddl.progress" and "outcome" in event]
    assert any(event["online"] == "swap" for event in attempts), "no swap attempt while the blocker held the table"
    # The capture's triggers are attempted the same way: postponed while autovacuum works on the fresh table.
    assert {event["online"] for event in attempts} <= {"capture", "swap"}
    assert {event["outcome"] for event in attempts} <= {"postponed", "lock wait given up"}


def _past_capture(db: AppDb) -> bool:
    found = state(db)
    return found is not None and found[0] == "capture"


def _inside_the_swap(db: AppDb) -> bool:
    """The engine's session holds ACCESS EXCLUSIVE on the live table: inside a swap transaction."""
    with db.server.admin_connect(db.name) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted"
            " AND l.mode = 'AccessExclusiveLock' AND l.relation = %s::regclass"
            " AND a.application_name LIKE 'temporal-migrator-tool/%%'",
            (TABLE,),
        ).fetchone()
    return row is not None and row[0] > 0


KILL_POINTS: dict[str, tuple[Callable[[AppDb], bool], str | None]] = {
    # phase: (when to kill, a lock a blocker holds on the table meanwhile so the engine waits there)
    "capture": (_past_capture, f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE"),
    "copy": (lambda db: (state(db) or ("", 0, 0))[:2] >= ("copy", 300), None),
    "index": (lambda db: (found := state(db)) is not None and found[0] == "index" and found[2] >= 3, None),
    "catchup": (lambda db: (state(db) or ("",))[0] == "catchup", None),
    "swap": (lambda db: (state(db) or ("",))[0] == "swap", f"SELECT 1 FROM {TABLE} LIMIT 1"),
    "cleanup": (lambda db: (state(db) or ("",))[0] == "cleanup", None),
    # the swap's ALTER PUBLICATION waits for a session altering the publication (to its default: no change),
    # after the swap has locked the table, replayed and exchanged the tables: killed there, it all rolls back
    "swap transaction": (
        _inside_the_swap,
        "ALTER PUBLICATION visibility_feed SET (publish_via_partition_root = false)",
    ),
}


@pytest.mark.parametrize("phase", list(KILL_POINTS))
def test_killed_in_each_phase_then_resumed_converges(
    make_db: MakeDb, temporal_tool: Path, schema_dir: Path, phase: str
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = store_at_start(make_db, temporal_tool, schema_dir)
    condition, blocker = KILL_POINTS[phase]
    with live_writes(db) as writers, contextlib.ExitStack() as stack:
        if blocker is not None:
            stack.enter_context(db.holding(blocker))
        proc = start_engine(db, *VERSIONS, "--batch", "100", MIGRATOR_DDL_LOCK_TIMEOUT="60")
        if phase == "cleanup":  # the cleanup's DROP of the log waits for a reader of the log
            wait_until(lambda: (state(db) or ("",))[0] in ("index", "catchup"), 300, "the index phase", proc)
            stack.enter_context(db.holding(f"SELECT 1 FROM {WORK_SCHEMA}.log LIMIT 0"))
        wait_until(lambda: condition(db), 300, f"the {phase} phase", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        stack.close()
        left = state(db)
        assert (left is not None and left[0] == phase.split(maxsplit=1)[0]) or phase == "catchup", left
        finish(start_engine(db, *VERSIONS))
        check_converged(db, writers, clean)


@pytest.mark.portable
def test_killed_then_aborted_leaves_the_table_as_it_was(make_db: MakeDb, temporal_tool: Path, schema_dir: Path) -> None:
    db = store_at_start(make_db, temporal_tool, schema_dir)
    before = (db.schema_dump(), catalog(db), db.version_rows())
    with live_writes(db) as writers:
        proc = start_engine(db, *VERSIONS, "--batch", "100")
        wait_until(lambda: (state(db) or ("", 0, 0))[0] == "index", 300, "the index phase", proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert traces(db)[:3] != (0, 0, 0)
        events = finish(start_engine(db, "--abort"))
        assert [event["phase"] for event in events if event["event"] == "online.aborted"] == ["index"]
        time.sleep(0.5)
        writers.stop()
        assert writers.writes > 20
        assert writers.errors == []
        with db.connect() as conn:
            comparison = compare(conn, writers.columns)
            assert comparison.identical, comparison.summary()
            drop_witness(conn)
    assert traces(db) == (0, 0, 0, 1)
    assert (db.schema_dump(), catalog(db), db.version_rows()) == before


def test_a_backlog_that_does_not_shrink_gives_up_and_removes_every_trace(
    make_db: MakeDb, temporal_tool: Path, schema_dir: Path
) -> None:
    """Catch-up rounds that replay nothing (``--round 0``: a replay any write rate outpaces, on a loaded machine
    too, where one-key rounds could keep up with slowed writers) against live writes: the backlog does not
    shrink, the run gives up (exit 6 through the CLI) after removing its work, and the table is as it was, every
    write kept."""
    db = store_at_start(make_db, temporal_tool, schema_dir)
    before = (db.schema_dump(), catalog(db), db.version_rows())
    with live_writes(db) as writers:
        proc = start_engine(db, *VERSIONS, "--round", "0", "--patience", "5")
        _, stderr = proc.communicate(timeout=600)
        time.sleep(0.5)
        writers.stop()
        assert writers.errors == []
        with db.connect() as conn:
            comparison = compare(conn, writers.columns)
            assert comparison.identical, comparison.summary()
            drop_witness(conn)
    assert proc.returncode != 0
    assert "UnsafeStateError: the online rewrite of executions_visibility could not catch up" in stderr
    assert "removed its work, changed nothing" in stderr
    assert traces(db) == (0, 0, 0, 1)
    assert (db.schema_dump(), catalog(db), db.version_rows()) == before
