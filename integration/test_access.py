"""Connections, credentials, privileges and the lock: each failure has its exit code and changes nothing."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import psycopg
import pytest
from psycopg import sql

from devtools.databases import AppDb, MakeDb
from devtools.pgcluster import free_port
from integration.support.processes import EventStream, RunMigrator, StartMigrator, events_named
from integration.support.scenarios import TARGETS
from migrator.run.lock import lock_key

pytestmark = pytest.mark.portable


@pytest.mark.portable
def test_postgres15_public_schema_without_create_exits_4_and_leaves_nothing(
    make_db: MakeDb, run_migrator: RunMigrator
) -> None:
    db = make_db("app_other")  # owned by another role, as when CloudNativePG's owner is not the app role
    done = run_migrator(db, "migrate", "--schema", "temporal")
    assert done.returncode == 4, done.stderr[-2000:]
    message = events_named(done.stderr, "run.failed")[0]["error"]
    assert 'GRANT CREATE ON SCHEMA "public" TO "app"' in message
    assert "schemas" in message
    assert events_named(done.stderr, "tool.started") == []
    with db.server.admin_connect(db.name) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)


def test_wrong_password_exits_4_fast_and_names_the_secret(app_db: AppDb, run_migrator: RunMigrator) -> None:
    started = time.monotonic()
    done = run_migrator(app_db, "migrate", env=app_db.env(SQL_PASSWORD="not-the-Password-1"))
    elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stderr[-2000:]
    assert events_named(done.stderr, "db.retrying") == []  # refused at the first attempt, not retried
    assert elapsed < 60  # far below the 120 s --connect-timeout a retried refusal would take
    message = events_named(done.stderr, "run.failed")[0]["error"]
    assert "'app'" in message
    assert "Secret" in message
    assert "not-the-Password-1" not in done.stderr + done.stdout


def test_missing_role_exits_4(app_db: AppDb, run_migrator: RunMigrator) -> None:
    done = run_migrator(app_db, "status", env=app_db.env(SQL_USER="nobody_here"))
    assert done.returncode == 4


def test_role_without_connect_exits_4(make_db: MakeDb, run_migrator: RunMigrator) -> None:
    db = make_db("app_other")  # an owner always may connect, so the database belongs to another role
    with db.server.admin_connect() as conn:
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC, app").format(sql.Identifier(db.name)))
    done = run_migrator(db, "status")
    assert done.returncode == 4, done.stderr[-2000:]
    assert "GRANT CONNECT" in events_named(done.stderr, "run.failed")[0]["error"]


def test_unreachable_server_exits_3_after_the_connect_timeout(app_db: AppDb, run_migrator: RunMigrator) -> None:
    started = time.monotonic()
    done = run_migrator(app_db, "status", env=app_db.env(SQL_PORT=str(free_port()), MIGRATOR_CONNECT_TIMEOUT="3"))
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr[-2000:]
    assert 3 <= elapsed < 60  # the 3 s given, not the 120 s default (a loaded machine starts Python slowly)
    assert events_named(done.stderr, "db.retrying")


def test_database_created_late_is_waited_for(make_db: MakeDb, start_migrator: StartMigrator) -> None:
    db = make_db()
    with db.server.admin_connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(db.name)))
    process = start_migrator(db, "migrate", "--schema", "temporal", env=db.env(MIGRATOR_CONNECT_TIMEOUT="120"))
    stream = EventStream(process)
    stream.wait_for("db.retrying", timeout=60)  # it tried, and waits for the database
    with db.server.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(db.name)))
    assert process.wait(180) == 0, stream.rest()[-2000:]
    assert db.version_rows() == [(db.name, TARGETS["temporal"])]


def test_lock_held_elsewhere_times_out_with_exit_5_naming_the_holder(app_db: AppDb, run_migrator: RunMigrator) -> None:
    with psycopg.connect(
        host=app_db.server.host,
        port=app_db.server.port,
        user=app_db.user,
        password=app_db.password,
        dbname=app_db.name,
        autocommit=True,
        application_name="other-migrator",
    ) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(app_db.name),))
        done = run_migrator(app_db, "migrate", "--lock-timeout", "3")
    assert done.returncode == 5, done.stderr[-2000:]
    waiting = events_named(done.stderr, "lock.waiting")
    assert waiting
    assert waiting[0]["holder_application"] == "other-migrator"
    assert app_db.version_rows() == []


class LateListener:
    """A loopback port that refuses connections until ``start()``, then forwards them to the real server:
    a PostgreSQL that comes up a few seconds after the migrator starts."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = free_port()
        self.server: socket.socket | None = None
        self.stopped = threading.Event()

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.server = socket.create_server((self.host, self.port), family=family)
        self.server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        if self.server is not None:
            self.server.close()

    def _accept(self) -> None:
        assert self.server is not None
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_server_that_comes_up_late_is_waited_for(app_db: AppDb, start_migrator: StartMigrator) -> None:
    listener = LateListener((app_db.server.host, app_db.server.port))
    try:
        process = start_migrator(
            app_db,
            "migrate",
            "--schema",
            "temporal",
            env=app_db.env(SQL_PORT=str(listener.port), MIGRATOR_CONNECT_TIMEOUT="120"),
        )
        stream = EventStream(process)
        stream.wait_for("db.retrying", timeout=60)  # it tried, was refused, and waits for the server
        listener.start()
        assert process.wait(180) == 0, stream.rest()[-2000:]
    finally:
        listener.stop()
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]


@pytest.mark.parametrize("spelling", ["::1", "[::1]"])
def test_an_ipv6_host_works_in_both_spellings(spelling: str, app_db: AppDb, run_migrator: RunMigrator) -> None:
    """main: "::1" reached libpq but the tool said "invalid host and port"; "[::1]" never reached libpq."""
    listener = LateListener((app_db.server.host, app_db.server.port), host="::1")  # the server over IPv6
    listener.start()
    try:
        done = run_migrator(
            app_db, "migrate", "--schema", "temporal", env=app_db.env(SQL_HOST=spelling, SQL_PORT=str(listener.port))
        )
    finally:
        listener.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert events_named(done.stderr, "tool.started")[0]["argv"][1:3] == ["--ep", "[::1]"]
    assert app_db.version_rows() == [(app_db.name, TARGETS["temporal"])]
