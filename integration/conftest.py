"""pytest plugin for the integration suite: a real PostgreSQL, app roles like CloudNativePG, the real tool.

Where the server comes from (first that applies), once per session (per xdist worker):
1. ``MIGRATOR_TEST_PG_URL``: a superuser libpq URL of an external server (shared by all workers);
2. Testcontainers ``PostgresContainer(POSTGRES_IMAGE from pins.env)`` when a Docker engine answers;
3. a throwaway local cluster from the PostgreSQL >= 15 server binaries (``integration/pgcluster.py``).
``MIGRATOR_TEST_PG_SOURCE=docker|local`` forces 2 or 3. Everything under ``integration/`` is marked
``integration``. When PostgreSQL or the tool is missing the tests skip with the reason, except in CI
(``CI=true``), where they fail: CI never skips the integration suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from integration.ci import unavailable
from integration.harness import (
    AppDb,
    PgServer,
    log_events,
    migrator_argv,
    read_pins,
    resolve_schema_dir,
    resolve_tool,
    run_tool_binary,
    server_from_url,
    server_major,
    versioned_dir,
)
from integration.pgcluster import (
    MAX_CONNECTIONS,
    MIN_MAJOR,
    ClusterError,
    LocalCluster,
    create_database,
    derived_password,
    drop_database,
    ensure_login_role,
    find_server_bin,
)

__all__ = ["AppDb", "PgServer", "log_events", "versioned_dir"]

HERE = Path(__file__).resolve().parent
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
    next_tool, next_tool_how = resolve_tool("next")
    next_schema, next_schema_how = resolve_schema_dir("next")
    return [
        f"integration: temporal-sql-tool={tool or tool_how}",
        f"integration: schema-dir={schema or schema_how}",
        f"integration: next release's temporal-sql-tool={next_tool or next_tool_how}",
        f"integration: next release's schema-dir={next_schema or next_schema_how}",
        f"integration: postgres from {os.environ.get('MIGRATOR_TEST_PG_SOURCE', source)}",
    ]


# -- server --------------------------------------------------------------------------------------------


def _docker_answers(timeout: float = 3.0) -> bool:
    try:
        import docker  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # any failure means "no usable engine"
        return False


def _testcontainers_server(stack: contextlib.ExitStack) -> PgServer:
    try:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    except ImportError:  # testcontainers < 4.14
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    from docker.types import Ulimit  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - optional

    # MIGRATOR_TEST_POSTGRES_IMAGE: an image honouring the official one's contract, e.g. the one
    # scripts/testcontainers-test.sh makes from Debian's packages where no image registry is reachable.
    image = os.environ.get("MIGRATOR_TEST_POSTGRES_IMAGE") or read_pins()["POSTGRES_IMAGE"]
    password = secrets.token_urlsafe(18)
    container = (
        PostgresContainer(image, username="postgres", password=password, dbname="postgres", driver=None)
        .with_command(
            f"postgres -c max_connections={MAX_CONNECTIONS} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off"
        )
        # Explicit limits: rootful podman with runc cannot start a container that inherits none.
        .with_kwargs(ulimits=[Ulimit(name=name, soft=1024, hard=4096) for name in ("nofile", "nproc")])
    )
    container.start()
    stack.callback(container.stop)
    host = container.get_container_host_ip()
    if host == "localhost":  # the published port is on IPv4 for sure; Go may try ::1 first
        host = "127.0.0.1"
    port = int(container.get_exposed_port(5432))
    probe = PgServer(host, port, "postgres", password, 0, source="testcontainers")
    deadline = time.monotonic() + 30
    while True:
        try:
            with probe.admin_connect() as conn:
                major = server_major(conn)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return PgServer(host, port, "postgres", password, major, source="testcontainers")


def _local_server(stack: contextlib.ExitStack) -> PgServer:
    if find_server_bin(MIN_MAJOR) is None:
        unavailable(
            f"no PostgreSQL server: MIGRATOR_TEST_PG_URL unset, no Docker engine, and no PostgreSQL >= {MIN_MAJOR}"
            " binaries under /usr/lib/postgresql (apt-get install postgresql, or run scripts/test.sh)"
        )
    try:
        cluster = LocalCluster.create()
    except ClusterError as exc:
        unavailable(f"could not start a local PostgreSQL cluster: {exc}")
    stack.callback(cluster.destroy)
    return PgServer(
        cluster.host,
        cluster.port,
        cluster.admin_user,
        cluster.admin_password,
        cluster.major,
        bin_dir=cluster.bin_dir,
        source="local",
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL (>= 15) with the app roles ``app`` and ``app_other`` created."""
    with contextlib.ExitStack() as stack:
        url = os.environ.get("MIGRATOR_TEST_PG_URL")
        wanted = os.environ.get("MIGRATOR_TEST_PG_SOURCE", "auto")
        if url:
            server = server_from_url(url)
        elif wanted == "docker" or (wanted == "auto" and _docker_answers()):
            server = _testcontainers_server(stack)
        else:
            server = _local_server(stack)
        if server.major < MIN_MAJOR:
            unavailable(f"PostgreSQL {server.major} at {server.host}:{server.port}; the suite needs >= {MIN_MAJOR}")
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


@pytest.fixture(scope="session")
def next_tool() -> Path:
    """The real temporal-sql-tool of the next release (TEMPORAL_NEXT_SQL_TOOL, else the build cache)."""
    return _required(resolve_tool("next"))


@pytest.fixture(scope="session")
def next_schema_dir() -> Path:
    """Root of the vendor tree of the next release (TEMPORAL_NEXT_SCHEMA_DIR, else GOMODCACHE)."""
    return _required(resolve_schema_dir("next"))


# -- databases -----------------------------------------------------------------------------------------


class MakeDb(Protocol):
    def __call__(self, owner: str = "app", *, connect_as: str = "app") -> AppDb: ...


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


class RunMigrator(Protocol):
    def __call__(
        self, db: AppDb, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]: ...


class StartMigrator(Protocol):
    def __call__(self, db: AppDb, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]: ...


class RunTool(Protocol):
    def __call__(self, db: AppDb, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]: ...


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


def events_named(stderr: str, name: str) -> list[dict[str, Any]]:
    """Log events of the migrator whose ``event`` is ``name``."""
    return [e for e in log_events(stderr) if e.get("event") == name]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The crash-point matrix's count of crash points tried/converged and its duration (when it ran)."""
    from integration.test_crash_matrix import summarise  # noqa: PLC0415 - only the summary needs it

    summarise(terminalreporter)
