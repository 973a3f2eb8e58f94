"""Building blocks of the integration harness: servers, app databases, the real tool, log parsing.

The pytest fixtures in ``integration/conftest.py`` wire these together; nothing here depends on pytest.

Requirement for ``AppDb.schema_dump()``: a local ``pg_dump`` whose major version is >= the server's
(``/usr/lib/postgresql/<major>/bin/pg_dump`` or ``pg_dump`` on PATH). The local cluster uses its own;
for Testcontainers or ``MIGRATOR_TEST_PG_URL`` install the ``postgresql`` (or client) package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import errors, sql

from integration.pgcluster import PG_LIB, connect_admin
from integration.pgmajors import catalog_dump

REPO_ROOT = Path(__file__).resolve().parent.parent
PINS_FILE = REPO_ROOT / "pins.env"
PLUGIN = "postgres12"
Store = Literal["temporal", "visibility"]
STORES: tuple[Store, ...] = ("temporal", "visibility")

# Environment of the children we start: inherited SQL_*/MIGRATOR_* variables are dropped so a developer's
# shell cannot steer a test; the harness sets what it needs.
_SCRUBBED_PREFIXES = ("SQL_", "MIGRATOR_", "TEMPORAL_SQL_TOOL")


# -- pins ---------------------------------------------------------------------------------------------


def read_pins(path: Path = PINS_FILE) -> dict[str, str]:
    """Parse ``pins.env`` (shell ``KEY=VALUE`` lines, ``#`` comments, optional quotes)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pins[key.strip().removeprefix("export ").strip()] = value
    return pins


# -- where the real tool and the vendor tree are ---------------------------------------------------------


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/temporal-migrator`` (same rule as scripts/build-tool.sh)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "temporal-migrator"


def default_tool_path(temporal_version: str) -> Path:
    return cache_dir() / f"temporal-{temporal_version}" / "bin" / "sql"


def _go_binary() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    fallback = Path("/usr/local/go/bin/go")
    return str(fallback) if fallback.is_file() else None


def gomodcache() -> Path | None:
    if os.environ.get("GOMODCACHE"):
        return Path(os.environ["GOMODCACHE"])
    go = _go_binary()
    if go is not None:
        proc = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    return None


def default_schema_dir(temporal_version: str) -> Path | None:
    modcache = gomodcache()
    if modcache is None:
        return None
    return modcache / "go.temporal.io" / f"server@{temporal_version}" / "schema"


# Which release: the pinned one (TEMPORAL_VERSION; overridable by TEMPORAL_SQL_TOOL and TEMPORAL_SCHEMA_DIR) or one
# of the older releases the upgrade tests start from (TEMPORAL_UPGRADE_FROM; always from the build cache).


def upgrade_sources() -> list[str]:
    """The older releases pinned as upgrade sources (TEMPORAL_UPGRADE_FROM), oldest first."""
    return read_pins()["TEMPORAL_UPGRADE_FROM"].split()


def resolve_tool(release: str | None = None) -> tuple[Path | None, str]:
    """``(path, how it was found)`` of the tool of ``release`` (None: the pinned one); path is None (with the
    reason) when the tool is missing."""
    env = os.environ.get("TEMPORAL_SQL_TOOL") if release is None else None
    version = release or read_pins()["TEMPORAL_VERSION"]
    path = Path(env) if env else default_tool_path(version)
    origin = "TEMPORAL_SQL_TOOL" if env else "scripts/build-tool.sh cache"
    if path.is_file() and os.access(path, os.X_OK):
        return path, origin
    return None, f"temporal-sql-tool {version} not found at {path} ({origin}); run scripts/build-tool.sh {version}"


def resolve_schema_dir(release: str | None = None) -> tuple[Path | None, str]:
    """``(root of the vendor tree, how it was found)`` of ``release`` (None: the pinned one), as resolve_tool."""
    env = os.environ.get("TEMPORAL_SCHEMA_DIR") if release is None else None
    version = release or read_pins()["TEMPORAL_VERSION"]
    path = Path(env) if env else default_schema_dir(version)
    origin = "TEMPORAL_SCHEMA_DIR" if env else "GOMODCACHE"
    if path is not None and (path / "postgresql" / "v12").is_dir():
        return path, origin
    return None, f"Temporal {version} schema tree not found at {path} ({origin}); run scripts/build-tool.sh {version}"


def versioned_dir(schema_dir: Path, store: Store) -> Path:
    """``<schema_dir>/postgresql/v12/<store>/versioned`` (the directory ``update-schema -d`` takes)."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    return schema_dir / "postgresql" / "v12" / store / "versioned"


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
        catalog (``integration/pgmajors.py``) when no local pg_dump is as new as the server."""
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

    def version_rows(self) -> list[tuple[str, str]]:
        """``(db_name, curr_version)`` rows of schema_version; [] if the table is missing."""
        return self._rows(sql.SQL("SELECT db_name, curr_version FROM schema_version ORDER BY db_name"))

    def history(self) -> list[tuple[str, str]]:
        """``(old_version, new_version)`` of schema_update_history by update_time; [] if missing."""
        return self._rows(sql.SQL("SELECT old_version, new_version FROM schema_update_history ORDER BY update_time"))


# -- children ------------------------------------------------------------------------------------------


def migrator_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrator", *args]


def tool_argv(tool: Path, db: AppDb, *args: str) -> list[str]:
    """The real tool with explicit global flags (never --quiet); the password goes through SQL_PASSWORD."""
    return [
        str(tool),
        "--ep",
        db.server.host,
        "-p",
        str(db.server.port),
        "-u",
        db.user,
        "--db",
        db.name,
        "--pl",
        PLUGIN,
        *args,
    ]


def tool_env(db: AppDb) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env["SQL_PASSWORD"] = db.password
    return env


def run_tool_binary(tool: Path, db: AppDb, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a real temporal-sql-tool binary against ``db`` (global flags first, password via SQL_PASSWORD)."""
    return subprocess.run(
        tool_argv(tool, db, *args),
        env=tool_env(db),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def bring_to(tool: Path, db: AppDb, schema_dir: Path, store: Store, version: str | None) -> None:
    """The bare tool, as a hook would: ``setup-schema -v 0.0``, then ``update-schema`` to ``version``
    ("0.0": setup only; None: the tree's newest)."""
    setup = run_tool_binary(tool, db, "setup-schema", "-v", "0.0")
    if setup.returncode != 0:
        raise RuntimeError(f"setup-schema failed on {db.name}: {setup.stderr[-2000:]}")
    if version == "0.0":
        return
    target = () if version is None else ("-v", version)
    update = run_tool_binary(tool, db, "update-schema", "-d", str(versioned_dir(schema_dir, store)), *target)
    if update.returncode != 0:
        raise RuntimeError(f"update-schema {' '.join(target)} failed on {db.name}: {update.stderr[-2000:]}")


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The JSON objects of a migrator's JSON-lines stderr, in order; other lines are ignored."""
    events: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events
