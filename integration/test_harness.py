"""Self-tests of the integration harness, on the real server and the real tool."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from devtools.databases import AppDb, MakeDb, PgServer, normalise_dump
from devtools.pins import read_pins, versioned_dir
from integration.support.processes import RunTool, log_events


def test_server_is_15_or_newer(pg_server: PgServer) -> None:
    with pg_server.admin_connect() as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int / 10000").fetchone()
    assert row is not None
    assert row[0] == pg_server.major >= 15


def test_app_role_is_plain_login_role(app_db: AppDb) -> None:
    with app_db.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == (False, False, False, True)


def test_app_owns_its_database_and_can_create_in_public(app_db: AppDb) -> None:
    with app_db.connect() as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        can = conn.execute(
            "SELECT has_schema_privilege('public', 'CREATE'), has_database_privilege(current_database(), 'CREATE')"
        ).fetchone()
        conn.execute("CREATE TABLE probe (id int)")
    assert owner == ("app",)
    assert can == (True, True)


def test_database_owned_by_another_role_denies_create_in_public(make_db: MakeDb) -> None:
    db = make_db("app_other")
    assert (db.user, db.owner) == ("app", "app_other")
    with db.connect() as conn:
        can = conn.execute("SELECT has_schema_privilege('public', 'CREATE')").fetchone()
        assert can == (False,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE probe (id int)")


def test_tool_sets_up_and_updates_schema(app_db: AppDb, run_tool: RunTool, schema_dir: Path) -> None:
    assert app_db.version_rows() == []
    assert app_db.history() == []

    setup = run_tool(app_db, "setup-schema", "-v", "0.0")
    assert setup.returncode == 0, setup.stderr
    assert app_db.version_rows() == [(app_db.name, "0.0")]

    update = run_tool(app_db, "update-schema", "-d", str(versioned_dir(schema_dir, "temporal")), "-v", "1.0")
    assert update.returncode == 0, update.stderr
    assert app_db.version_rows() == [(app_db.name, "1.0")]
    assert app_db.history()[-1] == ("0.0", "1.0")


def test_tool_failure_is_visible(app_db: AppDb, run_tool: RunTool, schema_dir: Path) -> None:
    # update-schema without a schema_version table is an error (exit 1), not a silent success.
    result = run_tool(app_db, "update-schema", "-d", str(versioned_dir(schema_dir, "temporal")), "-v", "1.0")
    assert result.returncode == 1


def test_schema_dumps_of_identical_setups_are_equal(make_db: MakeDb, run_tool: RunTool, schema_dir: Path) -> None:
    dumps = []
    for _ in range(2):
        db = make_db()
        assert run_tool(db, "setup-schema", "-v", "0.0").returncode == 0
        update = run_tool(db, "update-schema", "-d", str(versioned_dir(schema_dir, "visibility")), "-v", "1.1")
        assert update.returncode == 0, update.stderr
        dumps.append(db.schema_dump())
    assert "CREATE TABLE public.executions_visibility" in dumps[0]
    assert dumps[0] == dumps[1]


def test_pins_and_helpers() -> None:
    pins = read_pins()
    assert pins["TEMPORAL_VERSION"].startswith("v")
    assert log_events('noise\n{"event": "a", "n": 1}\n[1]\n{bad\n') == [{"event": "a", "n": 1}]
    dump = "--\n-- c\n\nSET x = 1;\nSELECT pg_catalog.set_config('search_path', '', false);\n\\restrict k\nCREATE X;\n"
    assert normalise_dump(dump) == "CREATE X;\n"
    with pytest.raises(ValueError, match="store"):
        versioned_dir(Path("/x"), "nope")  # type: ignore[arg-type]
