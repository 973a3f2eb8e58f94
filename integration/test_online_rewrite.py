"""Online rewrites through the CLI under a live Temporal-like load, checked by a transactional witness
(devtools/witness.py): every write of the load commits with the row's hash in ``bench.witness``, and after the run
the table must equal the witness row by row.

- The witness itself: a row changed, removed or added behind its back, or a generated column that no longer equals
  its expression, is found.
- ``migrate --rewrite-mode online`` from v1.29.1's schema (1.9, installed by its own tool) and from v1.30.4's (1.12,
  shaped like a 1.13 install) to the pinned release under live writes: no write lost, no query failed, no
  temporal_migrator_* object left, and the schema equal to a clean install's (``setup-schema`` + ``update-schema``
  on an empty database): ``pg_dump --schema-only`` where a local pg_dump can read the server, else the catalog
  description of devtools/pgmajors.py (every major 13-18 through ``pytest -m portable``).
- ``kill -9`` in every phase (at the phase's event: ``online.started`` for capture, ``ddl.progress`` for copy,
  index, catch-up and swap, ``online.swapped`` for cleanup; a session holding the table or the change log keeps
  the run in the phase where it would pass in milliseconds): ``status`` names the phase, ``migrate`` resumes and
  converges (witness and identity); ``migrate --abort-online`` after a kill leaves the table as it was.
- A session holding ACCESS SHARE holds off the swap: the run waits and completes once it ends, and the live load
  never waits longer than the swap's bounded attempts.
- A FOR ALL TABLES publication: refused (exit 6, nothing changed), and accepted with
  ``--online-allow-all-tables-publication``.
- A real Temporal server of v1.29.1 starts and completes workflows while its visibility store is rewritten online;
  the pinned release's server then lists every one of them.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devtools.data import fill
from devtools.databases import AppDb, MakeDb
from devtools.witness import LOCK_WAIT_GOAL, Comparison, Load, compare, drop_witness
from integration.support.plugin import ReleaseFiles
from integration.support.processes import EventStream, RunMigrator, StartMigrator, bring_to, log_events
from integration.support.scenarios import TARGETS
from integration.test_temporal_server import OLD, PINNED, StartServer, by_id, client_binary, start_server
from migrator.core.online import WORK_SCHEMA, Phase

__all__ = ["client_binary", "start_server"]  # the real server's fixtures (integration/test_temporal_server.py)

SOURCE_RELEASE = "v1.29.1"  # visibility 1.9, installed by its own tool (pins.env TEMPORAL_UPGRADE_OWN_TOOL)
SOURCE_VERSION = "1.9"
ROWS = 3_000
KILL_ROWS = 12_000  # six copy batches, and index builds long enough to land in
UPGRADE_SOURCE = "v1.30.4"  # its 1.12 has the v1.10-v1.12 columns: 1.13 and 1.14 go in one pass
TABLE = "executions_visibility"
BEFORE_ONLINE = "1.12"  # the pinned tree's v1.10-v1.12 are empty version bumps; 1.13 and 1.14 rewrite the table
ONLINE = ("--rewrite-mode", "online", "--progress-interval", "0.1")
_TRACES = """
SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'temporal\\_migrator\\_%%')
     + (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'temporal\\_migrator\\_%%')
     + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'temporal\\_migrator\\_%%')
     + (SELECT count(*) FROM pg_class WHERE relname LIKE 'temporal\\_migrator\\_%%')
"""


def visibility_at(make_db: MakeDb, release_files: ReleaseFiles, release: str, version: str, rows: int) -> AppDb:
    """A visibility store at ``version`` of ``release``'s tree, installed by the tool that installs it, with rows."""
    tool, schema = release_files(release)
    db = make_db()
    bring_to(tool, db, schema, "visibility", version)
    with db.connect() as conn:
        fill(conn, "executions_visibility", rows)
    return db


def run_load(db: AppDb, seconds: float) -> Load:
    load = Load(db.connect)
    with load:
        time.sleep(seconds)
    return load


@pytest.mark.portable
def test_the_witness_finds_a_row_changed_lost_or_resurrected_behind_its_back(
    make_db: MakeDb, release_files: ReleaseFiles
) -> None:
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, ROWS)
    load = run_load(db, 3)
    assert load.errors == []
    assert load.writes >= 20, load.writes
    with db.connect() as conn:
        clean = compare(conn, load.columns)
        assert clean.identical, clean.summary()
        assert clean.table_rows == clean.witness_rows >= ROWS // 2
        namespace, run_id = conn.execute(
            "SELECT namespace_id, run_id FROM executions_visibility ORDER BY run_id LIMIT 1"
        ).fetchone() or ("", "")
        conn.execute(
            "UPDATE executions_visibility SET memo = 'changed' WHERE namespace_id = %s AND run_id = %s",
            (namespace, run_id),
        )
        changed = compare(conn, load.columns)
        assert not changed.identical
        assert (changed.table_rows, changed.differing) == (clean.table_rows, 1)
        assert changed.examples == ((namespace.rstrip(), run_id.rstrip()),)
        assert changed.table_md5 != changed.witness_md5
        conn.execute("DELETE FROM executions_visibility WHERE namespace_id = %s AND run_id = %s", (namespace, run_id))
        lost = compare(conn, load.columns)
        assert (lost.table_rows, lost.witness_rows, lost.differing) == (clean.table_rows - 1, clean.table_rows, 1)
        conn.execute("DELETE FROM bench.witness WHERE namespace_id = %s AND run_id = %s", (namespace, run_id))
        assert compare(conn, load.columns).identical
        conn.execute("DELETE FROM bench.witness WHERE run_id = (SELECT max(run_id) FROM bench.witness)")
        resurrected = compare(conn, load.columns)
        assert (resurrected.differing, resurrected.table_rows - resurrected.witness_rows) == (1, 1)


@pytest.mark.portable
def test_the_load_reports_a_query_that_waited_the_goal_for_a_lock_as_an_error(
    make_db: MakeDb, release_files: ReleaseFiles
) -> None:
    """The oracle of the tests below: the server cancels a live query that waited LOCK_WAIT_GOAL for a lock."""
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, 200)
    load = Load(db.connect, lock_wait=LOCK_WAIT_GOAL).start()
    with db.holding(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"):
        time.sleep(LOCK_WAIT_GOAL + 1)
    load.stop()
    assert load.errors, "no query waited for the lock"
    assert all(error.startswith("LockNotAvailable: ") for error in load.errors), load.errors[:5]


@pytest.mark.portable
def test_the_witness_finds_a_generated_column_that_is_not_its_expression(
    make_db: MakeDb, release_files: ReleaseFiles
) -> None:
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, 200)
    load = run_load(db, 2)
    with db.connect() as conn:
        assert compare(conn, load.columns).generated == {}
        stamped = conn.execute(
            "SELECT count(*) FROM executions_visibility WHERE temporalscheduledstarttime IS NOT NULL"
        ).fetchone()
        assert stamped is not None
        assert stamped[0] > 0, "the load writes TemporalScheduledStartTime"
        # convert_ts, declared IMMUTABLE, redefined: the stored values no longer equal the expression's
        with conn.transaction(force_rollback=True):
            conn.execute(
                "CREATE OR REPLACE FUNCTION convert_ts(s varchar) RETURNS timestamp AS $$ BEGIN"
                " RETURN s::timestamptz AT TIME ZONE 'UTC' + interval '1 hour'; END $$"
                " LANGUAGE plpgsql IMMUTABLE RETURNS NULL ON NULL INPUT"
            )
            wrong = compare(conn, load.columns)
        assert compare(conn, load.columns).identical
    assert wrong.generated.get("temporalscheduledstarttime") == stamped[0], wrong.summary()
    assert not wrong.identical


# -- the CLI's online path -----------------------------------------------------------------------------------

_CLEAN: dict[tuple[str, int], str] = {}


def clean_install(make_db: MakeDb, temporal_tool: Path, schema_dir: Path) -> str:
    """The schema of a clean install at the pinned release (setup-schema + update-schema on an empty database)."""
    probe = make_db()
    key = (probe.server.host, probe.server.port)
    if key not in _CLEAN:
        bring_to(temporal_tool, probe, schema_dir, "visibility", None)
        _CLEAN[key] = probe.schema_dump()
    return _CLEAN[key]


def traces(db: AppDb) -> int:
    """Objects named temporal_migrator_* (schemas, triggers, functions, relations): 0 after a run."""
    with db.server.admin_connect(db.name) as conn:
        row = conn.execute(_TRACES).fetchone()
    assert row is not None
    return int(row[0])


def recorded_phase(db: AppDb) -> str | None:
    with db.server.admin_connect(db.name) as conn:
        try:
            row = conn.execute(f"SELECT phase FROM {WORK_SCHEMA}.state").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else str(row[0])


def witnessed(db: AppDb, load: Load) -> Comparison:
    """Stop the load and compare the table with its witness (then drop the witness, for the schema dump)."""
    load.stop()
    assert load.errors == [], load.errors[:5]  # no live query failed, across every swap and kill
    with db.connect() as conn:
        comparison = compare(conn, load.columns)
        drop_witness(conn)
    assert comparison.identical, comparison.summary()
    return comparison


def converged(db: AppDb, load: Load, clean: str) -> Comparison:
    comparison = witnessed(db, load)
    assert traces(db) == 0
    assert db.schema_dump() == clean
    assert db.version_rows() == [(db.name, TARGETS["visibility"])]
    return comparison


def online_events(stderr: str) -> list[dict[str, Any]]:
    return [e for e in log_events(stderr) if e.get("event", "").startswith("online.") or e.get("online")]


SOURCES = [
    pytest.param(SOURCE_RELEASE, SOURCE_VERSION, id="v1.29.1-at-1.9", marks=pytest.mark.portable),
    pytest.param(UPGRADE_SOURCE, "1.12", id="v1.30.4-at-1.12", marks=pytest.mark.portable),
]


@pytest.mark.parametrize(("release", "version"), SOURCES)
def test_online_migrate_keeps_every_live_write_and_equals_a_clean_install(
    make_db: MakeDb,
    release_files: ReleaseFiles,
    run_migrator: RunMigrator,
    temporal_tool: Path,
    schema_dir: Path,
    release: str,
    version: str | None,
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    tool, tree = release_files(release)
    db = make_db()
    bring_to(tool, db, tree, "visibility", version)
    with db.connect() as conn:
        fill(conn, TABLE, KILL_ROWS)
    load = Load(db.connect, lock_wait=LOCK_WAIT_GOAL).start()
    time.sleep(1)
    writes = load.writes
    proc = run_migrator(db, "migrate", "--schema", "visibility", *ONLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    time.sleep(0.5)
    during = load.writes - writes
    comparison = converged(db, load, clean)  # no live query failed: none waited LOCK_WAIT_GOAL for a lock
    assert during >= 20, during  # the table changed while it was rewritten
    assert comparison.table_rows >= KILL_ROWS
    events = online_events(proc.stderr)
    phases = {e["online"] for e in events if e["event"] == "ddl.progress"}
    assert {Phase.COPY, Phase.INDEX, Phase.CATCHUP} <= phases, phases
    assert [e["event"] for e in events if e["event"] in ("online.started", "online.swapped", "online.done")] == [
        "online.started",
        "online.swapped",
        "online.done",
    ]


def kill_point(db: AppDb, phase: Phase, stream: EventStream, holds: contextlib.ExitStack) -> None:
    """Wait until the run is in ``phase``, by its event; a session holding the table (or the log) keeps it there
    where the phase would pass in milliseconds."""
    if phase is Phase.CAPTURE:  # the capture trigger's CREATE TRIGGER waits behind a writer's open transaction
        stream.wait_for("online.started", 180)
        time.sleep(1)
        return
    if phase in (Phase.SWAP, Phase.CLEANUP):
        stream.wait_for("ddl.progress", 180, lambda e: e.get("online") == Phase.INDEX)
        if phase is Phase.SWAP:  # a reader's open transaction: every swap attempt is postponed
            holds.enter_context(db.holding(f"SELECT 1 FROM {TABLE} LIMIT 1"))
            stream.wait_for("ddl.progress", 180, lambda e: e.get("online") == Phase.SWAP)
        else:  # a reader of the change log: cleanup's DROP waits for it
            holds.enter_context(db.holding(f"SELECT 1 FROM {WORK_SCHEMA}.log LIMIT 0"))
            stream.wait_for("online.swapped", 180)
        return
    least = 3 if phase is Phase.INDEX else 0
    stream.wait_for("ddl.progress", 180, lambda e: e.get("online") == phase and e.get("index", 0) >= least)


def killed_in(
    db: AppDb, phase: Phase, start_migrator: StartMigrator, *, capture_hold: bool = True
) -> tuple[str, subprocess.Popen[str]]:
    """Start an online migrate, SIGKILL it in ``phase``; the phase its state row recorded."""
    with contextlib.ExitStack() as holds:
        if phase is Phase.CAPTURE and capture_hold:
            holds.enter_context(db.holding(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE"))
        proc = start_migrator(db, "migrate", "--schema", "visibility", *ONLINE)
        stream = EventStream(proc)
        kill_point(db, phase, stream, holds)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    recorded = recorded_phase(db)
    assert recorded is not None, stream.rest()[-2000:]
    return recorded, proc


@pytest.mark.parametrize("phase", list(Phase), ids=[phase.value for phase in Phase])
def test_killed_in_each_phase_then_migrate_resumes_and_converges(
    make_db: MakeDb,
    release_files: ReleaseFiles,
    run_migrator: RunMigrator,
    start_migrator: StartMigrator,
    temporal_tool: Path,
    schema_dir: Path,
    phase: Phase,
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, KILL_ROWS)
    load = Load(db.connect).start()
    recorded, _ = killed_in(db, phase, start_migrator)
    # catch-up hands over to the swap within milliseconds once its backlog is small
    assert recorded == phase or (phase is Phase.CATCHUP and recorded == Phase.SWAP), recorded
    status = run_migrator(db, "status", "--schema", "visibility")
    assert f"online-rewrite in progress ({recorded})" in status.stdout + status.stderr, status.stdout[-2000:]
    time.sleep(1)  # the trigger keeps capturing while no run is there
    resumed = run_migrator(db, "migrate", "--schema", "visibility")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [e["phase"] for e in log_events(resumed.stderr) if e.get("event") == "online.resumed"] == [recorded]
    converged(db, load, clean)


def test_killed_then_aborted_leaves_the_table_as_it_was(
    make_db: MakeDb, release_files: ReleaseFiles, run_migrator: RunMigrator, start_migrator: StartMigrator
) -> None:
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, KILL_ROWS)
    load = Load(db.connect).start()
    before = (db.schema_dump(), db.version_rows())
    recorded, _ = killed_in(db, Phase.INDEX, start_migrator)
    assert recorded == Phase.INDEX
    assert traces(db) > 0
    aborted = run_migrator(db, "migrate", "--schema", "visibility", "--abort-online")
    assert aborted.returncode == 0, aborted.stderr[-3000:]
    time.sleep(0.5)
    assert traces(db) == 0
    assert db.schema_dump() == before[0]
    # the killed run had recorded v1.10-v1.12 (version bumps the tool ran before the online step)
    assert db.version_rows() == [(db.name, BEFORE_ONLINE)] != before[1]
    witnessed(db, load)


def test_a_session_a_killed_run_left_is_ended_before_the_run_resumes(
    make_db: MakeDb,
    release_files: ReleaseFiles,
    run_migrator: RunMigrator,
    start_migrator: StartMigrator,
    temporal_tool: Path,
    schema_dir: Path,
) -> None:
    """A backend of a killed run (tagged with its lock session's pid) still holding the shadow would stall the
    resumed copy and index builds: the resumed run ends it first, and says so."""
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, KILL_ROWS)
    load = Load(db.connect).start()
    recorded, _ = killed_in(db, Phase.INDEX, start_migrator)
    assert recorded == Phase.INDEX
    with db.connect() as orphan:
        orphan.execute("SELECT set_config('application_name', 'temporal-migrator-tool/1', false)")
        row = orphan.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        orphan.execute("BEGIN")
        orphan.execute(f"LOCK TABLE {WORK_SCHEMA}.{TABLE} IN EXCLUSIVE MODE")  # blocks the copy and the builds
        resumed = run_migrator(db, "migrate", "--schema", "visibility", "--ddl-retry-timeout", "60")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        ended = [e["pids"] for e in log_events(resumed.stderr) if e.get("event") == "online.orphans_ended"]
        assert len(ended) == 1, ended
        assert row[0] in ended[0], ended
        with pytest.raises(psycopg.OperationalError):
            orphan.execute("SELECT 1")
    converged(db, load, clean)


def test_a_reader_holding_the_table_holds_off_the_swap_until_it_ends(
    make_db: MakeDb, release_files: ReleaseFiles, start_migrator: StartMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, KILL_ROWS)
    load = Load(db.connect, lock_wait=LOCK_WAIT_GOAL).start()
    proc = start_migrator(db, "migrate", "--schema", "visibility", *ONLINE)
    stream = EventStream(proc)
    with contextlib.ExitStack() as holds:
        stream.wait_for("ddl.progress", 180, lambda e: e.get("online") == Phase.INDEX)
        holds.enter_context(db.holding(f"SELECT 1 FROM {TABLE} LIMIT 1"))
        for _ in range(2):
            stream.wait_for("ddl.progress", 180, lambda e: e.get("online") == Phase.SWAP)
        assert proc.poll() is None, "the swap went ahead while a reader held the table"
        time.sleep(2)
    swapped = stream.wait_for("online.swapped", 180)
    assert proc.wait(180) == 0, stream.rest()[-3000:]
    assert swapped["attempt"] >= 1
    assert recorded_phase(db) is None
    # each attempt waits at most half of --max-stall: the load's queries queued behind it never reach LOCK_WAIT_GOAL
    converged(db, load, clean)


def test_a_for_all_tables_publication_is_refused_unless_allowed(
    make_db: MakeDb, release_files: ReleaseFiles, run_migrator: RunMigrator, temporal_tool: Path, schema_dir: Path
) -> None:
    clean = clean_install(make_db, temporal_tool, schema_dir)
    db = visibility_at(make_db, release_files, SOURCE_RELEASE, SOURCE_VERSION, ROWS)
    with db.server.admin_connect(db.name) as conn:
        conn.execute("CREATE PUBLICATION everything FOR ALL TABLES")
    load = Load(db.connect).start()
    before = (db.schema_dump(), db.version_rows())
    refused = run_migrator(db, "migrate", "--schema", "visibility", *ONLINE)
    assert refused.returncode == 6, refused.stderr[-3000:]
    assert "everything" in refused.stderr
    assert "changed nothing" in refused.stderr
    assert (db.schema_dump(), db.version_rows()) == before
    assert traces(db) == 0
    allowed = run_migrator(db, "migrate", "--schema", "visibility", *ONLINE, "--online-allow-all-tables-publication")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    with db.server.admin_connect(db.name) as conn:
        conn.execute("DROP PUBLICATION everything")
    converged(db, load, clean)


def test_a_temporal_server_serves_workflows_through_the_online_upgrade(
    make_db: MakeDb,
    release_files: ReleaseFiles,
    run_migrator: RunMigrator,
    start_migrator: StartMigrator,
    start_server: StartServer,
) -> None:
    default, visibility = make_db(), make_db()
    old_tool, old_tree = release_files(OLD)
    bring_to(old_tool, default, old_tree, "temporal", None)
    bring_to(old_tool, visibility, old_tree, "visibility", None)
    with visibility.connect() as conn:  # other namespaces' executions: the rewrite takes long enough to serve in
        fill(conn, TABLE, KILL_ROWS)
    old_server, old_client = start_server(OLD, default, visibility)
    old_server.wait_ready()
    old_client("register")
    plain = ("-signal", "0", "-timer", "0")
    workflows = old_client("start", "-completed", "2", *plain)["workflows"]
    proc = start_migrator(visibility, "migrate", "--schema", "visibility", *ONLINE)
    stream = EventStream(proc)
    during = 0
    while proc.poll() is None:  # the old server starts and completes workflows while the table is rewritten
        workflows += old_client("start", "-completed", "2", *plain)["workflows"]
        during += 1
    assert proc.wait() == 0, stream.rest()[-3000:]
    assert during >= 2, during
    assert "online.swapped" in stream.rest()
    workflows += old_client("start", "-completed", "2", *plain)["workflows"]  # and after it, on the new table
    total = str(len(workflows))
    assert set(by_id(old_client("list", "-expect", total, "-expect-completed", total))) == {w["id"] for w in workflows}
    old_server.stop()
    done = run_migrator(default, "migrate", "--schema", "temporal")
    assert done.returncode == 0, done.stderr[-3000:]
    new_server, client = start_server(PINNED, default, visibility)
    new_server.wait_ready()
    listed = by_id(client("list", "-expect", total, "-expect-completed", total))
    assert set(listed) == {w["id"] for w in workflows}
    for workflow in workflows:
        seen = listed[workflow["id"]]
        assert (seen["run_id"], seen["status"]) == (workflow["run_id"], "Completed")
        assert seen["events"][-1] == "WorkflowExecutionCompleted"
