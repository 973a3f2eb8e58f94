"""Connecting as the tool does, on the real server: refused logins told apart by the server's own SQLSTATE,
passwords any character long, server settings from --connect-attributes.

Each test is a scenario of issue 9 that went wrong on main at b218e95 (exit code then: in the docstring).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from psycopg import sql

from devtools.databases import AppDb, PgServer
from integration.support.processes import RunMigrator, events_named
from integration.support.scenarios import TARGETS

PrivateDb = Callable[..., AppDb]


@pytest.fixture
def private_db(pg_server: PgServer, app_db: AppDb) -> Iterator[PrivateDb]:
    """Factory of a role of its own (``password``, connection limit) owning a fresh database; both dropped after.

    A role of its own, so that changing it (a connection limit, a strange password) touches no other test.
    """
    made: list[tuple[str, str]] = []

    def make(password: str, connection_limit: int = -1) -> AppDb:
        role = name = f"mt_own_{uuid.uuid4().hex[:10]}"
        with pg_server.admin_connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {}").format(
                    sql.Identifier(role), sql.Literal(password), sql.Literal(connection_limit)
                )
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
        made.append((role, name))
        return AppDb(pg_server, name, role, password, app_db.tool, app_db.schema_dir, owner=role)

    yield make
    with pg_server.admin_connect() as conn:
        for role, name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_connection_limit_reached_with_the_right_password_is_waited_for_not_called_a_bad_password(
    private_db: PrivateDb, run_migrator: RunMigrator
) -> None:
    """main: exit 4 at once, "the password in the Secret and the role's password disagree"."""
    db = private_db("right-Password-1", connection_limit=1)
    with db.connect():  # the one session the role may have, held as Temporal's own pools would
        done = run_migrator(db, "status", env=db.env(MIGRATOR_CONNECT_TIMEOUT="3"))
    assert done.returncode == 3, done.stderr[-2000:]
    message = events_named(done.stderr, "run.failed")[0]["error"]
    assert "53300" in message  # the server's own reason, with its SQLSTATE
    assert "too many connections" in message
    assert events_named(done.stderr, "db.retrying")


def test_database_not_created_yet_behind_hardened_maintenance_databases_is_waited_for(
    app_db: AppDb, run_migrator: RunMigrator
) -> None:
    """main: exit 4 ("password ... disagree"): its probes of postgres and template1 were refused."""
    with app_db.server.admin_connect() as conn:
        conn.execute("REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC")
    try:
        started = time.monotonic()
        done = run_migrator(
            app_db,
            "status",
            env=app_db.env(SQL_DATABASE=f"mt_later_{uuid.uuid4().hex[:8]}", MIGRATOR_CONNECT_TIMEOUT="3"),
        )
    finally:
        with app_db.server.admin_connect() as conn:
            conn.execute("GRANT CONNECT ON DATABASE postgres, template1 TO PUBLIC")
    assert done.returncode == 3, done.stderr[-2000:]
    assert time.monotonic() - started >= 3
    message = events_named(done.stderr, "run.failed")[0]["error"]
    assert "3D000" in message
    assert "does not exist" in message


PASSWORD = "p w+%&:@\\x#?/'\""


@pytest.mark.parametrize("plugin", ["postgres12", "postgres12_pgx"])
def test_a_password_with_url_special_characters_works_with_both_plugins(
    plugin: str, private_db: PrivateDb, run_migrator: RunMigrator
) -> None:
    """main: exit 7, the tool's "password authentication failed" (it escaped the space as "+")."""
    for store in ("temporal", "visibility"):  # each store in a database of its own
        db = private_db(PASSWORD)
        done = run_migrator(db, "migrate", "--schema", store, env=db.env(SQL_PLUGIN=plugin))
        assert done.returncode == 0, done.stderr[-2000:]
        assert PASSWORD not in done.stdout + done.stderr
        assert db.version_rows() == [(db.name, TARGETS[store])]


def test_search_path_in_connect_attributes_moves_the_whole_run_to_that_schema(
    app_db: AppDb, run_migrator: RunMigrator
) -> None:
    """main: exit 2 (no --connect-attributes); the tool alone would put the tables in that schema."""
    with app_db.connect() as conn:
        conn.execute("CREATE SCHEMA temporal_store")
    attributes = app_db.env(SQL_CONNECT_ATTRIBUTES="search_path=temporal_store")
    done = run_migrator(app_db, "migrate", "--schema", "temporal", env=attributes)
    assert done.returncode == 0, done.stderr[-2000:]
    with app_db.connect() as conn:
        where = dict(conn.execute("SELECT schemaname, count(*) FROM pg_tables GROUP BY 1").fetchall())
    assert "public" not in where
    assert where["temporal_store"] > 2
    status = run_migrator(app_db, "status", "--schema", "temporal", env=attributes)
    assert status.returncode == 0, status.stderr[-2000:]
    assert '"state": "current"' in status.stdout
