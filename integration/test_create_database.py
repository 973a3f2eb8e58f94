"""``migrate --create-database`` on the real PostgreSQL and tool, as non-superuser roles with and without CREATEDB."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from devtools.databases import AppDb, PgServer
from devtools.pgcluster import derived_password, drop_database, ensure_login_role
from devtools.pins import Store, resolve_schema_dir, resolve_tool
from integration.support.processes import RunMigrator, events_named, steps_done
from migrator.source.tree import load_vendor_schema

CREATOR = "app_creator"

MissingDb = Callable[[str], AppDb]


@pytest.fixture(scope="session")
def creator_role(pg_server: PgServer) -> str:
    """A CloudNativePG-like login role that also has CREATEDB (and nothing else)."""
    with pg_server.admin_connect() as conn:
        ensure_login_role(conn, CREATOR, derived_password(pg_server.admin_password, CREATOR))
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(CREATOR)))
    return CREATOR


@pytest.fixture
def missing_db(pg_server: PgServer, app_roles: dict[str, str], creator_role: str) -> Iterator[MissingDb]:
    """A database name that does not exist yet (mixed case and a dash: it must be quoted), seen as ``user``."""
    names: list[str] = []
    passwords = {**app_roles, creator_role: derived_password(pg_server.admin_password, creator_role)}

    def make(user: str) -> AppDb:
        names.append(f"mt_Create-Db_{uuid.uuid4().hex[:8]}")
        tool, _ = resolve_tool()
        schemas, _ = resolve_schema_dir()
        return AppDb(pg_server, names[-1], user, passwords[user], tool=tool, schema_dir=schemas, owner=user)

    yield make
    with pg_server.admin_connect() as conn:
        for name in names:
            drop_database(conn, name)


def owner_of(server: PgServer, name: str) -> str | None:
    with server.admin_connect() as conn:
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else str(row[0])


def newest(db: AppDb, store: Store = "temporal") -> str:
    assert db.schema_dir is not None
    return load_vendor_schema(db.schema_dir, store).newest.name


# A table of each store that a test can put a row in once it is migrated.
ROW = {
    "temporal": "INSERT INTO namespace_metadata (partition_id, notification_version) VALUES (1, 1)",
    "visibility": "INSERT INTO executions_visibility (namespace_id, run_id, start_time, execution_time,"
    " workflow_id, workflow_type_name, status, history_length, task_queue, encoding, memo)"
    " VALUES ('n', 'r', now(), now(), 'w', 't', 1, 0, 'q', 'json/plain', ''::bytea)",
}


@pytest.mark.parametrize("store", ["temporal", "visibility"])
def test_with_createdb_the_database_is_created_then_migrated(
    missing_db: MissingDb, run_migrator: RunMigrator, creator_role: str, store: Store
) -> None:
    db = missing_db(creator_role)
    planned = run_migrator(db, "plan", "--create-database", "--schema", store)
    assert planned.returncode == 0, planned.stderr
    first = run_migrator(db, "migrate", "--create-database", "--schema", store)
    assert first.returncode == 0, first.stderr
    assert owner_of(db.server, db.name) == creator_role
    # the creation is a step of the plan like the others, and migrate carries out exactly what plan showed
    # (a log line's "database" is the run's own, which is the one create-database names)
    shown = [{k: v for k, v in step.items() if k != "database"} for step in json.loads(planned.stdout)["steps"]]
    assert steps_done(first.stderr) == shown
    assert shown[0] == {"action": "create-database"}
    assert [event["owner"] for event in events_named(first.stderr, "database.created")] == [creator_role]
    assert db.version_rows() == [(db.name, newest(db, store))]
    with db.connect() as conn:  # the creator owns public (PostgreSQL 15): Temporal's tables are its own
        conn.execute(ROW[store])

    again = run_migrator(db, "migrate", "--schema", store, env=db.env(MIGRATOR_CREATE_DATABASE="true"))
    assert again.returncode == 0, again.stderr
    assert events_named(again.stderr, "database.created") == []
    assert events_named(again.stderr, "tool.started") == []


def test_without_createdb_exit_4_names_the_fix_and_creates_nothing(
    missing_db: MissingDb, run_migrator: RunMigrator
) -> None:
    db = missing_db("app")
    result = run_migrator(db, "migrate", "--create-database", "--connect-timeout", "5")
    assert result.returncode == 4, result.stderr
    [failed] = events_named(result.stderr, "run.failed")
    assert f'CREATE DATABASE "{db.name}" OWNER "app"' in failed["error"]
    assert 'ALTER ROLE "app" CREATEDB' in failed["error"]
    assert [event["state"] for event in events_named(result.stderr, "state.observed")] == ["absent"]
    assert events_named(result.stderr, "step.done") == []
    assert db.password not in result.stderr + result.stdout
    assert owner_of(db.server, db.name) is None
    planned = run_migrator(db, "plan", "--create-database")  # plan exits as migrate would, after the document
    assert planned.returncode == 4, planned.stderr
    assert json.loads(planned.stdout)["blocked"] == failed["error"]


def test_an_existing_database_is_left_to_migrate_even_without_createdb(
    app_db: AppDb, run_migrator: RunMigrator
) -> None:
    with app_db.connect() as conn:  # a row of our own: the database must be the same one afterwards
        conn.execute("CREATE TABLE app_notes (id int)")
        conn.execute("INSERT INTO app_notes VALUES (7)")
    result = run_migrator(app_db, "migrate", "--create-database")
    assert result.returncode == 0, result.stderr
    assert events_named(result.stderr, "database.created") == []
    assert app_db.version_rows() == [(app_db.name, newest(app_db))]
    with app_db.connect() as conn:
        assert conn.execute("SELECT id FROM app_notes").fetchall() == [(7,)]


def test_without_the_flag_a_missing_database_is_not_created(missing_db: MissingDb, run_migrator: RunMigrator) -> None:
    db = missing_db(CREATOR)
    result = run_migrator(db, "migrate", "--connect-timeout", "2")
    assert result.returncode == 3, result.stderr
    assert owner_of(db.server, db.name) is None
    with pytest.raises(psycopg.OperationalError):
        db.connect().close()


def test_plan_shows_the_creation_and_creates_nothing(
    missing_db: MissingDb, run_migrator: RunMigrator, creator_role: str
) -> None:
    db = missing_db(creator_role)
    result = run_migrator(db, "plan", "--create-database")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["state"], document["current_version"], document["blocked"]) == ("absent", None, None)
    assert [step["action"] for step in document["steps"]] == ["create-database", "setup-schema", "update-schema"]
    assert document["pending_versions"][-1] == document["target_version"] == newest(db)
    assert owner_of(db.server, db.name) is None


def test_status_without_createdb_warns_with_the_fix(missing_db: MissingDb, run_migrator: RunMigrator) -> None:
    db = missing_db("app")
    result = run_migrator(db, "status", "--create-database", "--output", "table")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[2:5] == ["none", newest(db), "absent"]
    assert lines[lines.index("Warnings:") + 1].startswith(f"  database {db.name!r} does not exist")
    assert 'ALTER ROLE "app" CREATEDB' in " ".join(result.stdout.split())
    assert owner_of(db.server, db.name) is None


# -- a role that may not connect to the maintenance database ----------------------------------------------


def _write_server_file(conn: psycopg.Connection[tuple[object, ...]], path: str, content: bytes) -> None:
    """Write ``content`` to ``path`` as the server's own user, byte for byte (a large object, exported)."""
    row = conn.execute("SELECT lo_from_bytea(0, %s)", (content,)).fetchone()
    assert row is not None
    try:
        conn.execute("SELECT lo_export(%s, %s)", (row[0], path))
    finally:
        conn.execute("SELECT lo_unlink(%s)", (row[0],))


def _reaches_postgres(server: PgServer, role: str, password: str) -> bool:
    try:
        server.connect_as(role, password, "postgres").close()
    except psycopg.OperationalError:
        return False
    return True


@contextmanager
def shut_out_of_postgres(server: PgServer, role: str, password: str) -> Iterator[None]:
    """``role`` (and no other) may not connect to ``postgres``, as on a cluster hardened with REVOKE CONNECT ON
    DATABASE postgres FROM PUBLIC; restored afterwards. A pg_hba.conf reject rule for this one role, because
    revoking CONNECT from PUBLIC would change what every other test's roles may do on a shared server."""
    with server.admin_connect() as conn:
        row = conn.execute("SELECT current_setting('hba_file'), pg_read_binary_file(current_setting('hba_file'))")
        path, original = row.fetchone() or ("", b"")
        rules = f"local postgres {role} reject\nhost postgres {role} all reject\n".encode()
        _write_server_file(conn, path, rules + bytes(original))
        try:
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 30
            while _reaches_postgres(server, role, password):  # the reload is asynchronous: wait until it took
                assert time.monotonic() < deadline, "pg_hba.conf reload not seen within 30 s"
                time.sleep(0.1)
            yield
        finally:
            _write_server_file(conn, path, bytes(original))
            conn.execute("SELECT pg_reload_conf()")


@pytest.fixture
def outsider_db(pg_server: PgServer) -> Iterator[AppDb]:
    """A database owned by a role of its own (so the pg_hba rule touches no other test's role)."""
    role, name = f"mt_outsider_{uuid.uuid4().hex[:8]}", f"mt_outsider_db_{uuid.uuid4().hex[:8]}"
    password = derived_password(pg_server.admin_password, role)
    with pg_server.admin_connect() as conn:
        ensure_login_role(conn, role, password)
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    tool, _ = resolve_tool()
    schemas, _ = resolve_schema_dir()
    yield AppDb(pg_server, name, role, password, tool=tool, schema_dir=schemas, owner=role)
    with pg_server.admin_connect() as conn:
        drop_database(conn, name)
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_an_existing_database_needs_no_connect_on_postgres(outsider_db: AppDb, run_migrator: RunMigrator) -> None:
    db = outsider_db
    with shut_out_of_postgres(db.server, db.user, db.password):
        planned = run_migrator(db, "plan", "--create-database")
        migrated = run_migrator(db, "migrate", "--create-database")
        again = run_migrator(db, "migrate", "--create-database")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["state"] == "empty"
    assert migrated.returncode == 0, migrated.stderr
    assert [step["action"] for step in steps_done(migrated.stderr)] == ["setup-schema", "update-schema"]
    assert events_named(migrated.stderr, "database.created") == []
    assert db.version_rows() == [(db.name, newest(db))]
    assert again.returncode == 0, again.stderr
    assert events_named(again.stderr, "tool.started") == []
