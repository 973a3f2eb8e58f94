"""The integration suite's pytest plugin: hooks and fixtures (loaded by ``integration/conftest.py``).

A real PostgreSQL once per session (per xdist worker; where it comes from: ``integration/support/servers.py``), app
roles like CloudNativePG, the real tool and vendor tree, fresh databases per test, and runners for the
migrator and the tool. Everything under ``integration/`` is marked ``integration``. When PostgreSQL or the tool
is missing the tests skip with the reason, except in CI (``CI=true``), where they fail: CI never skips the
integration suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from devtools.ci import unavailable
from devtools.databases import AppDb, MakeDb, PgServer
from devtools.pgcluster import create_database, derived_password, drop_database, ensure_login_role
from devtools.pgmajors import DATABASE_OWNER_ROLE_SINCE, own_public_schema, pg15_public_schema
from devtools.pins import own_tool_sources, resolve_schema_dir, resolve_tool, upgrade_sources
from integration.support.crashpoints import summarise
from integration.support.processes import RunMigrator, RunTool, StartMigrator, migrator_argv, run_tool_binary
from integration.support.servers import provide_server

HERE = Path(__file__).resolve().parent.parent  # integration/
REPO_ROOT = HERE.parent
APP_ROLES = ("app", "app_other")


# -- hooks ---------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if not any(str(line).startswith("integration:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "integration: needs a real PostgreSQL and the real temporal-sql-tool")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> list[str]:
    tool, tool_how = resolve_tool()
    schema, schema_how = resolve_schema_dir()
    source = "MIGRATOR_TEST_PG_URL" if os.environ.get("MIGRATOR_TEST_PG_URL") else "docker if it answers, else local"
    own = own_tool_sources()
    sources = [
        f"{release}={'own' if release in own else 'pinned'} tool {'ok' if resolve_tool(release)[0] else 'missing'}"
        for release in upgrade_sources()
    ]
    return [
        f"integration: temporal-sql-tool={tool or tool_how}",
        f"integration: schema-dir={schema or schema_how}",
        f"integration: upgrade sources' tools: {' '.join(sources)}",
        f"integration: postgres from {os.environ.get('MIGRATOR_TEST_PG_SOURCE', source)}",
    ]


# -- server --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL (>= 13, with 15's public-schema defaults) with the app roles ``app`` and
    ``app_other`` created."""
    with contextlib.ExitStack() as stack:
        server = provide_server(stack)
        with server.admin_connect("template1") as conn:
            pg15_public_schema(conn, server.major)
        with server.admin_connect() as conn:
            for role in APP_ROLES:
                ensure_login_role(conn, role, derived_password(server.admin_password, role))
        yield server


@pytest.fixture(scope="session")
def app_roles(pg_server: PgServer) -> dict[str, str]:
    """Login role name -> password of the CloudNativePG-like app roles."""
    return {role: derived_password(pg_server.admin_password, role) for role in APP_ROLES}


# -- tool and vendor tree ------------------------------------------------------------------------------


def _required(found: tuple[Path | None, str]) -> Path:
    """A path the suite needs, or the reason it is missing (a failure in CI, a skip elsewhere)."""
    path, reason = found
    if path is None:
        unavailable(reason)
    return path


@pytest.fixture(scope="session")
def temporal_tool() -> Path:
    """The real temporal-sql-tool (TEMPORAL_SQL_TOOL, else scripts/build-tool.sh's cache)."""
    return _required(resolve_tool())


@pytest.fixture(scope="session")
def schema_dir() -> Path:
    """Root of the vendor tree of the pinned release (contains postgresql/v12/...)."""
    return _required(resolve_schema_dir())


class ReleaseFiles(Protocol):
    def __call__(self, release: str) -> tuple[Path, Path]: ...


@pytest.fixture(scope="session")
def release_files() -> ReleaseFiles:
    """``(tool that installs it, schema dir)`` of an older release (an upgrade source): its own tool when pinned in
    TEMPORAL_UPGRADE_OWN_TOOL, else the pinned release's (devtools.pins.resolve_tool)."""

    def find(release: str) -> tuple[Path, Path]:
        return _required(resolve_tool(release)), _required(resolve_schema_dir(release))

    return find


# -- databases -----------------------------------------------------------------------------------------


def _db_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:40]
    return f"mt_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_db(pg_server: PgServer, app_roles: dict[str, str], request: pytest.FixtureRequest) -> Iterator[MakeDb]:
    """Factory of fresh databases ``OWNER owner`` seen as role ``connect_as``; dropped (FORCE) at teardown."""
    created: list[str] = []
    tool, _ = resolve_tool()
    schemas, _ = resolve_schema_dir()

    def make(owner: str = "app", *, connect_as: str = "app") -> AppDb:
        for role in (owner, connect_as):
            if role not in app_roles:
                raise ValueError(f"unknown role {role!r}; the harness has {sorted(app_roles)}")
        name = _db_name(request.node.name)
        with pg_server.admin_connect() as conn:
            create_database(conn, name, owner)
            created.append(name)
            if owner != connect_as:
                conn.execute(
                    psycopg.sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                        psycopg.sql.Identifier(name), psycopg.sql.Identifier(connect_as)
                    )
                )
        if pg_server.major < DATABASE_OWNER_ROLE_SINCE:
            with pg_server.admin_connect(name) as conn:
                own_public_schema(conn, owner, pg_server.major)
        return AppDb(
            server=pg_server,
            name=name,
            user=connect_as,
            password=app_roles[connect_as],
            tool=tool,
            schema_dir=schemas,
            owner=owner,
        )

    yield make

    errors: list[str] = []
    with pg_server.admin_connect() as conn:
        for name in created:
            try:
                drop_database(conn, name)
            except psycopg.Error as exc:  # keep dropping the others; report at the end
                errors.append(f"{name}: {exc}")
    if errors:
        pytest.fail("could not drop test databases: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def app_db(make_db: MakeDb) -> AppDb:
    """A fresh database owned by ``app``, connected to as ``app``."""
    return make_db()


# -- children ------------------------------------------------------------------------------------------


@pytest.fixture
def run_migrator(temporal_tool: Path, schema_dir: Path) -> RunMigrator:
    """Run ``python -m migrator *args`` to completion with ``db.env()`` (or ``env``); text output captured."""

    def run(
        db: AppDb, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            migrator_argv(*args),
            env=db.env() if env is None else env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture
def start_migrator(temporal_tool: Path, schema_dir: Path) -> Iterator[StartMigrator]:
    """Start ``python -m migrator *args`` in the background (stdout/stderr piped, text); killed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(db: AppDb, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            migrator_argv(*args),
            env=db.env() if env is None else env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        started.append(proc)
        return proc

    yield start

    for proc in started:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


@pytest.fixture
def run_tool(temporal_tool: Path) -> RunTool:
    """Run the real temporal-sql-tool against ``db`` with explicit global flags (password via SQL_PASSWORD)."""

    def run(db: AppDb, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_tool_binary(temporal_tool, db, *args, timeout=timeout)

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The crash-point matrix's count of crash points tried/converged and its duration (when it ran)."""
    summarise(terminalreporter)
