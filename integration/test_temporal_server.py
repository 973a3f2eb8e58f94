"""A real Temporal server on the databases the migrator leaves: its start-up schema check passes, workflows run
and visibility lists them. The server runs on free loopback ports with both stores on the test PostgreSQL as the
CloudNativePG-like app role; the Go SDK client (integration/temporalclient) registers a namespace, runs a worker,
starts, signals and lists workflows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from devtools.ci import unavailable
from devtools.databases import AppDb, MakeDb
from devtools.pins import Store, read_pins
from devtools.temporal_server import (
    REFUSE_SECONDS,
    Client,
    TemporalServer,
    client_path,
    exercise,
    find_binary,
    server_path,
)
from integration.support.crashpoints import install_interruption, interrupt_update, middle_point, remove_interruption
from integration.support.plugin import ReleaseFiles
from integration.support.processes import EventStream, RunMigrator, StartMigrator, bring_to, steps_done
from integration.support.scenarios import TARGETS, previous_version

PINNED = read_pins()["TEMPORAL_VERSION"]
OLD = read_pins()["TEMPORAL_SERVER_FROM"]
TIMER_SECONDS = 30


class StartServer(Protocol):
    def __call__(self, release: str, default: AppDb, visibility: AppDb) -> tuple[TemporalServer, Client]: ...


@pytest.fixture(scope="session")
def client_binary() -> Path:
    path, build = find_binary(client_path(), "scripts/build-client.sh")
    if path is None:
        unavailable(build)
    return path


@pytest.fixture
def start_server(client_binary: Path) -> Iterator[StartServer]:
    """Start a server of a release on two databases (its client beside it); every server is closed at teardown."""
    started: list[TemporalServer] = []

    def start(release: str, default: AppDb, visibility: AppDb) -> tuple[TemporalServer, Client]:
        binary, build = find_binary(server_path(release), f"scripts/build-server.sh {release}")
        if binary is None:
            unavailable(build)
        server = TemporalServer(binary, default, visibility)
        started.append(server)
        server.start()
        return server, Client(client_binary, server)

    yield start
    for server in started:
        server.close()


def stores(default: AppDb, visibility: AppDb) -> tuple[tuple[AppDb, Store], ...]:
    return ((default, "temporal"), (visibility, "visibility"))


def migrate_both(run_migrator: RunMigrator, default: AppDb, visibility: AppDb) -> None:
    for db, store in stores(default, visibility):
        done = run_migrator(db, "migrate", "--schema", store)
        assert done.returncode == 0, done.stderr[-3000:]
        assert db.version_rows() == [(db.name, TARGETS[store])]


def by_id(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {workflow["id"]: workflow for workflow in listed["workflows"]}


def assert_serves(client: Client) -> None:
    """A namespace, one workflow that completes and one that waits for a signal; visibility lists both closed."""
    client.server.wait_ready()
    done = exercise(client)
    signalled = [w["id"] for w in done.started if w["kind"] == "signal"]
    assert done.results == {wid: f"hello {wid} after a signal" for wid in signalled}
    assert set(done.listed) == {w["id"] for w in done.started}
    for workflow in done.started:
        seen = done.listed[workflow["id"]]
        assert (seen["run_id"], seen["status"]) == (workflow["run_id"], "Completed")
        assert seen["events"][0] == "WorkflowExecutionStarted"
        assert seen["events"][-1] == "WorkflowExecutionCompleted"


def two_dbs(make_db: MakeDb) -> tuple[AppDb, AppDb]:
    return make_db(), make_db()


@pytest.mark.portable
def test_fresh_install_by_migrate_serves_workflows(
    make_db: MakeDb, run_migrator: RunMigrator, start_server: StartServer
) -> None:
    default, visibility = two_dbs(make_db)
    migrate_both(run_migrator, default, visibility)
    _, client = start_server(PINNED, default, visibility)
    assert_serves(client)


def test_store_repaired_after_a_crash_inside_a_version_serves_workflows(
    make_db: MakeDb, run_migrator: RunMigrator, start_server: StartServer, schema_dir: Path
) -> None:
    default, visibility = two_dbs(make_db)
    for db, store in stores(default, visibility):
        point = middle_point(schema_dir, store, TARGETS[store])
        assert db.tool is not None
        bring_to(db.tool, db, schema_dir, store, point.previous)
        crashed, _ = interrupt_update(db.tool, db, schema_dir, point)
        assert crashed.returncode == 1, crashed.stderr[-2000:]
        assert db.version_rows() == [(db.name, point.previous)]
    migrate_both(run_migrator, default, visibility)
    _, client = start_server(PINNED, default, visibility)
    assert_serves(client)


def test_upgrade_with_data_keeps_every_workflow_and_finishes_the_open_ones(
    make_db: MakeDb,
    run_migrator: RunMigrator,
    start_server: StartServer,
    release_files: ReleaseFiles,
    schema_dir: Path,
) -> None:
    default, visibility = two_dbs(make_db)
    old_tool, old_schema_dir = release_files(OLD)
    bring_to(old_tool, default, old_schema_dir, "temporal", None)
    bring_to(old_tool, visibility, old_schema_dir, "visibility", None)

    # The old release's server runs workflows: two complete, one waits for a signal, one on a timer.
    old_server, old_client = start_server(OLD, default, visibility)
    old_server.wait_ready()
    old_client("register")
    started = old_client(
        "start", "-completed", "2", "-signal", "1", "-timer", "1", "-timer-seconds", str(TIMER_SECONDS)
    )
    before = by_id(old_client("list", "-expect", "4", "-expect-completed", "2"))
    old_server.stop()
    kinds = {w["id"]: w["kind"] for w in started["workflows"]}
    assert sorted(kinds.values()) == ["completed", "completed", "signal", "timer"]
    assert set(before) == set(kinds)
    assert {wid: w["status"] for wid, w in before.items() if kinds[wid] != "completed"} == {
        wid: "Running" for wid, kind in kinds.items() if kind != "completed"
    }

    # migrate, with the visibility store's run interrupted in the middle of a version, then repaired.
    point = middle_point(schema_dir, "visibility", "1.13")
    with visibility.server.admin_connect(visibility.name) as conn:
        install_interruption(conn, point)
    crashed = run_migrator(visibility, "migrate", "--schema", "visibility")
    with visibility.server.admin_connect(visibility.name) as conn:
        remove_interruption(conn)
    assert crashed.returncode == 7, crashed.stderr[-3000:]
    assert visibility.version_rows() == [(visibility.name, point.previous)]
    # The crashed version's statements are IF NOT EXISTS forms and DO blocks, which re-run safely: the plan
    # finishes it (dropping any INVALID index an interrupted build left), and migrate does exactly that.
    planned = run_migrator(visibility, "plan", "--schema", "visibility")
    assert planned.returncode == 0, planned.stderr[-3000:]
    steps = json.loads(planned.stdout)["steps"]
    assert steps[-1] == {"action": "update-schema", "version": TARGETS["visibility"]}
    repaired = run_migrator(visibility, "migrate", "--schema", "visibility")
    assert repaired.returncode == 0, repaired.stderr[-3000:]
    assert steps_done(repaired.stderr) == steps
    migrate_both(run_migrator, default, visibility)

    # The new release's server finishes the open workflows and lists every workflow of before.
    new_server, client = start_server(PINNED, default, visibility)
    new_server.wait_ready()
    open_ids = [wid for wid, kind in kinds.items() if kind != "completed"]
    signal_ids = [wid for wid, kind in kinds.items() if kind == "signal"]
    finished = client("finish", "-signal-ids", ",".join(signal_ids), "-wait-ids", ",".join(open_ids))
    assert finished["results"] == {
        wid: f"hello {wid} after " + ("a signal" if kinds[wid] == "signal" else "a timer") for wid in open_ids
    }
    after = by_id(client("list", "-expect", "4", "-expect-completed", "4"))
    assert set(after) == set(before)
    for wid, old in before.items():
        new = after[wid]
        assert (new["run_id"], new["type"]) == (old["run_id"], old["type"])
        assert new["status"] == "Completed"
        if kinds[wid] == "completed":
            assert new["events"] == old["events"]  # history intact
        else:
            assert new["events"][: len(old["events"])] == old["events"]  # continued where it stopped
            assert new["events"][-1] == "WorkflowExecutionCompleted"


def test_store_one_version_behind_is_refused_until_migrate_and_wait_holds_until_then(
    make_db: MakeDb,
    run_migrator: RunMigrator,
    start_migrator: StartMigrator,
    start_server: StartServer,
    schema_dir: Path,
) -> None:
    default, visibility = two_dbs(make_db)
    behind = previous_version(schema_dir, "temporal", TARGETS["temporal"])
    done = run_migrator(default, "migrate", "--schema", "temporal", "--target-version", behind)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_migrator(visibility, "migrate", "--schema", "visibility").returncode == 0

    # Negative control: the server's schema check runs, and refuses a default store one version behind.
    refused, _ = start_server(PINNED, default, visibility)
    code = refused.exited(REFUSE_SECONDS)
    assert code not in (None, 0), f"the server did not refuse a store at {behind}:\n{refused.log()[-3000:]}"
    assert f"Expected version: {TARGETS['temporal']} cannot be greater than Actual version: {behind}" in refused.log()

    waiter = start_migrator(default, "wait", "--schema", "temporal", "--wait-timeout", "180")
    stream = EventStream(waiter)
    assert stream.wait_for("wait.pending", 60)["current_version"] == behind
    assert waiter.poll() is None, "wait returned while the store was behind"
    migrate_both(run_migrator, default, visibility)
    assert waiter.wait(60) == 0, stream.rest()[-1500:]

    _, client = start_server(PINNED, default, visibility)
    assert_serves(client)
