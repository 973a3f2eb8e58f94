"""Where the integration suite's PostgreSQL comes from: three sources, first that applies (see `provide_server`).

1. ``MIGRATOR_TEST_PG_URL``: a superuser libpq URL of an external server (shared by all workers);
2. Testcontainers ``PostgresContainer(POSTGRES_IMAGE from pins.env)`` when a Docker engine answers;
3. a throwaway local cluster from the server binaries of ``MIGRATOR_TEST_PG_BIN`` (any major from 13), else of
   the highest Debian package >= 15 (``devtools/pgcluster.py``).
``MIGRATOR_TEST_PG_SOURCE=docker|local`` forces 2 or 3. Nothing here depends on pytest fixtures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import warnings

import psycopg

from devtools.ci import unavailable
from devtools.databases import PgServer, server_from_url, server_major
from devtools.pgcluster import MAX_CONNECTIONS, MIN_MAJOR, ClusterError, LocalCluster, find_server_bin
from devtools.pgmajors import OLDEST_MAJOR
from devtools.pins import read_pins


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


def provide_server(stack: contextlib.ExitStack) -> PgServer:
    """The session's server from the first source that applies; ``stack`` stops it at the end."""
    url = os.environ.get("MIGRATOR_TEST_PG_URL")
    wanted = os.environ.get("MIGRATOR_TEST_PG_SOURCE", "auto")
    if url:
        server = server_from_url(url)
    elif wanted == "docker" or (wanted == "auto" and _docker_answers()):
        server = _testcontainers_server(stack)
    else:
        server = _local_server(stack)
    if server.major < OLDEST_MAJOR:
        unavailable(f"PostgreSQL {server.major} at {server.host}:{server.port}; the suite needs >= {OLDEST_MAJOR}")
    return server
