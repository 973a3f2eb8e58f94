"""The bad-input catalogue: each case exits with its documented code and a one-line message naming the fix,
leaks no password, and leaves the database exactly as it was (schema dump and version tables)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from devtools.databases import AppDb, MakeDb
from devtools.pins import versioned_dir
from integration.support.processes import RunMigrator, RunTool, events_named
from integration.support.scenarios import tool_to


@dataclass(frozen=True)
class World:
    make_db: MakeDb
    run_tool: RunTool
    schema_dir: Path
    tmp_path: Path

    def at_1_10(self) -> AppDb:
        db = self.make_db()
        tool_to(db, self.schema_dir, "temporal", "1.10")
        return db

    def admin_sql(self, db: AppDb, statement: sql.SQL | sql.Composed) -> None:
        with db.server.admin_connect(db.name) as conn:
            conn.execute(statement)

    def at_1_10_then(self, statement: sql.SQL) -> AppDb:
        """A database at 1.10 that an administrator then changed with ``statement``."""
        db = self.at_1_10()
        self.admin_sql(db, statement)
        return db


@dataclass(frozen=True)
class Case:
    code: int
    fragment: str
    args: tuple[str, ...] = ()
    env: Callable[[World, AppDb], dict[str, str]] = lambda world, db: {}
    prepare: Callable[[World], AppDb] = World.at_1_10


def _damaged_tree(world: World, db: AppDb) -> dict[str, str]:
    copy = world.tmp_path / "damaged"
    shutil.copytree(versioned_dir(world.schema_dir, "temporal"), versioned_dir(copy, "temporal"))
    manifest = versioned_dir(copy, "temporal") / "v1.11" / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "CurrVersion": "1.12"}))
    return {"MIGRATOR_SCHEMA_DIR": str(copy)}


def _empty_dir(world: World, db: AppDb) -> dict[str, str]:
    (world.tmp_path / "empty").mkdir()
    return {"MIGRATOR_SCHEMA_DIR": str(world.tmp_path / "empty")}


def _read_only(world: World) -> AppDb:
    db = world.at_1_10()
    world.admin_sql(
        db, sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(sql.Identifier(db.name))
    )
    return db


def _visibility_at_1_9(world: World) -> AppDb:
    db = world.make_db()
    tool_to(db, world.schema_dir, "visibility", "1.9")
    return db


# Errors raised before any connection are tests/test_cli.py's; credentials and privileges are test_access.py's.
CASES: dict[str, Case] = {
    "schema-dir-without-versioned": Case(2, "no vendor schema", env=_empty_dir),
    "manifest-mismatch": Case(2, "does not match directory v1.11", env=_damaged_tree),
    "tls-to-plain-server": Case(2, "drop --tls", env=lambda w, d: {"SQL_TLS": "true"}),
    "read-only-database": Case(4, "read-only", prepare=_read_only),
    # as when an old hook ran the tool as postgres: schema_version is not the app role's to read
    "version-table-of-another-role": Case(
        4, "SQLSTATE 42501", prepare=lambda w: w.at_1_10_then(sql.SQL("ALTER TABLE schema_version OWNER TO app_other"))
    ),
    "unparseable-version": Case(
        6, "not a version", prepare=lambda w: w.at_1_10_then(sql.SQL("UPDATE schema_version SET curr_version = '1.x'"))
    ),
    "tables-without-version-row": Case(
        6,
        "temporal_restored",
        prepare=lambda w: w.at_1_10_then(sql.SQL("UPDATE schema_version SET db_name = 'temporal_restored'")),
    ),
    "visibility-store-in-the-default-stores-database": Case(6, "separate databases", ("--schema", "visibility")),
    "default-store-in-the-visibility-stores-database": Case(6, "separate databases", prepare=_visibility_at_1_9),
    # refused before connecting; each once reached the server (a lock_timeout it rejects, a session moved to
    # another database, a connect() with two passwords)
    "ddl-lock-timeout-beyond-postgres": Case(2, "the most it can be", ("--ddl-lock-timeout", "1e7")),
    "infinite-ddl-lock-timeout": Case(2, "not a number of seconds", ("--ddl-lock-timeout", "inf")),
    "dbname-in-connect-attributes": Case(2, "--database/SQL_DATABASE", ("--connect-attributes", "dbname=postgres")),
    "password-in-connect-attributes": Case(
        2, "SQL_PASSWORD", env=lambda w, d: {"SQL_CONNECT_ATTRIBUTES": f"search_path=public&password={d.password}"}
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(
    name: str, make_db: MakeDb, run_tool: RunTool, run_migrator: RunMigrator, schema_dir: Path, tmp_path: Path
) -> None:
    case = CASES[name]
    world = World(make_db, run_tool, schema_dir, tmp_path)
    db = case.prepare(world)
    before = (db.schema_dump(), db.version_rows(), db.history())
    done = run_migrator(db, "migrate", "--schema", "temporal", *case.args, env=db.env(**case.env(world, db)))
    assert done.returncode == case.code, done.stderr[-2000:]
    failures = events_named(done.stderr, "run.failed")
    assert len(failures) == 1
    message = failures[0]["error"]
    assert case.fragment in message
    assert "\n" not in message
    assert events_named(done.stderr, "tool.started") == []
    assert db.password not in done.stdout + done.stderr
    assert (db.schema_dump(), db.version_rows(), db.history()) == before
