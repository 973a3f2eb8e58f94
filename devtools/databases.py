"""PostgreSQL servers and the test databases on them, as the migrator's app role sees them.

Requirement for ``AppDb.schema_dump()``: a local ``pg_dump`` whose major version is >= the server's
(``/usr/lib/postgresql/<major>/bin/pg_dump`` or ``pg_dump`` on PATH). The local cluster uses its own;
for Testcontainers or ``MIGRATOR_TEST_PG_URL`` install the ``postgresql`` (or client) package.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import errors, sql

from devtools.pgcluster import PG_LIB, connect_admin
from devtools.pgmajors import catalog_dump

PLUGIN = "postgres12"
# Environment of the children we start: inherited SQL_*/MIGRATOR_* variables are dropped so a developer's
# shell cannot steer a test; the harness sets what it needs.
_SCRUBBED_PREFIXES = ("SQL_", "MIGRATOR_", "TEMPORAL_SQL_TOOL")


# -- servers -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server reachable over TCP with a superuser login."""

    host: str
    port: int
    admin_user: str
    admin_password: str
    major: int
    bin_dir: Path | None = None  # server binaries of a local cluster (its pg_dump matches exactly)
    source: str = "external"  # "external" | "testcontainers" | "local"

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return connect_admin(self.host, self.port, self.admin_user, self.admin_password, dbname)

    def connect_as(self, user: str, password: str, dbname: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )


def server_major(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def server_from_url(url: str) -> PgServer:
    """A PgServer from an admin libpq URL (``postgresql://user:pw@host:port/db``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname or not parts.username:
        raise ValueError("MIGRATOR_TEST_PG_URL must look like postgresql://user:password@host:port/db")
    probe = PgServer(
        host=parts.hostname,
        port=parts.port or 5432,
        admin_user=unquote(parts.username),
        admin_password=unquote(parts.password or ""),
        major=0,
    )
    with probe.admin_connect() as conn:
        major = server_major(conn)
    return PgServer(probe.host, probe.port, probe.admin_user, probe.admin_password, major, source="external")


def find_pg_dump(server: PgServer) -> Path | None:
    """The pg_dump to use for ``server``: its own for a local cluster, else the highest local one >= its major;
    None when there is none (the embedded PostgreSQL packages ship no pg_dump)."""
    if server.bin_dir is not None and (server.bin_dir / "pg_dump").is_file():
        return server.bin_dir / "pg_dump"
    candidates: list[tuple[int, Path]] = []
    if PG_LIB.is_dir():
        for entry in PG_LIB.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "pg_dump").is_file():
                candidates.append((int(entry.name), entry / "bin" / "pg_dump"))
    on_path = shutil.which("pg_dump")
    if on_path:
        out = subprocess.run([on_path, "--version"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"(\d+)(?:\.\d+)?", out)
        if match:
            candidates.append((int(match.group(1)), Path(on_path)))
    usable = sorted((c for c in candidates if c[0] >= server.major), reverse=True)
    return usable[0][1] if usable else None


# -- app databases -------------------------------------------------------------------------------------

_DUMP_DROPPED = re.compile(r"^(--|SET |SELECT pg_catalog\.set_config|\\restrict |\\unrestrict )")


def normalise_dump(text: str) -> str:
    """Keep a schema dump's statements in order; drop comments, blank lines, session settings and the
    per-run ``\\restrict`` keys of recent pg_dump releases."""
    kept = [line for line in text.splitlines() if line.strip() and not _DUMP_DROPPED.match(line)]
    return "\n".join(kept) + "\n"


@dataclass
class AppDb:
    """One test database, as the migrator sees it: connection as ``user`` (the app role)."""

    server: PgServer
    name: str
    user: str
    password: str
    tool: Path | None = None
    schema_dir: Path | None = None
    owner: str = field(default="app")

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection as the app user (autocommit)."""
        return self.server.connect_as(self.user, self.password, self.name)

    @contextlib.contextmanager
    def holding(self, statement: str) -> Iterator[None]:
        """A session holding the lock ``statement`` takes, in an open transaction, until the block ends."""
        with self.connect() as conn:
            conn.execute("BEGIN")
            conn.execute(statement)
            try:
                yield
            finally:
                conn.execute("ROLLBACK")

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for the migrator: os.environ (less SQL_*/MIGRATOR_*) + connection + paths + overrides."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(
            SQL_HOST=self.server.host,
            SQL_PORT=str(self.server.port),
            SQL_USER=self.user,
            SQL_PASSWORD=self.password,
            SQL_DATABASE=self.name,
            SQL_PLUGIN=PLUGIN,
            MIGRATOR_LOG_FORMAT="json",
            MIGRATOR_TERMINATION_LOG="/dev/null",
        )
        if self.tool is not None:
            env["TEMPORAL_SQL_TOOL"] = str(self.tool)
        if self.schema_dir is not None:
            env["MIGRATOR_SCHEMA_DIR"] = str(self.schema_dir)
        env.update(overrides)
        return env

    def schema_dump(self) -> str:
        """``pg_dump --schema-only --no-owner --no-privileges``, normalised (see ``normalise_dump``); from the
        catalog (``devtools/pgmajors.py``) when no local pg_dump is as new as the server."""
        pg_dump = find_pg_dump(self.server)
        if pg_dump is None:
            with self.server.admin_connect(self.name) as conn:
                return catalog_dump(conn)
        env = dict(os.environ, PGPASSWORD=self.server.admin_password)
        proc = subprocess.run(
            [
                str(pg_dump),
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "-h",
                self.server.host,
                "-p",
                str(self.server.port),
                "-U",
                self.server.admin_user,
                "-d",
                self.name,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pg_dump of {self.name} failed: {proc.stderr.strip()}")
        return normalise_dump(proc.stdout)

    def _rows(self, query: sql.SQL) -> list[tuple[str, str]]:
        with self.server.admin_connect(self.name) as conn:
            try:
                return [(str(a), str(b)) for a, b in conn.execute(query).fetchall()]
            except errors.UndefinedTable:
                return []

    def invalid_indexes(self) -> list[str]:
        """Names of the INVALID indexes of the database (an interrupted concurrent build leaves one)."""
        return [
            name
            for name, _ in self._rows(
                sql.SQL(
                    "SELECT c.relname::text, '' FROM pg_index i JOIN pg_class c"
                    " ON c.oid = i.indexrelid WHERE NOT i.indisvalid ORDER BY 1"
                )
            )
        ]

    def version_rows(self) -> list[tuple[str, str]]:
        """``(db_name, curr_version)`` rows of schema_version; [] if the table is missing."""
        return self._rows(sql.SQL("SELECT db_name, curr_version FROM schema_version ORDER BY db_name"))

    def history(self) -> list[tuple[str, str]]:
        """``(old_version, new_version)`` of schema_update_history by update_time; [] if missing."""
        return self._rows(sql.SQL("SELECT old_version, new_version FROM schema_update_history ORDER BY update_time"))


class MakeDb(Protocol):
    def __call__(self, owner: str = "app", *, connect_as: str = "app") -> AppDb: ...
