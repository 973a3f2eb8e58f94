"""A throwaway local PostgreSQL cluster started from the server binaries, and CloudNativePG-style roles.

Used by the integration suite (``integration/support/servers.py``) when neither an external server
(``MIGRATOR_TEST_PG_URL``) nor a Docker engine is available, and by ``scripts/demo.sh`` through the
command line::

    python -m devtools.pgcluster start              # prints KEY=VALUE lines (shell-quoted) and returns
    python -m devtools.pgcluster create-app-db --dir DIR --role temporal --database temporal
    python -m devtools.pgcluster stop --dir DIR     # stops the server and removes DIR

The cluster listens on 127.0.0.1 only (``start --listen ADDR --allow CIDR`` adds an address, and the clients
of CIDR: for the pods of ``scripts/kube.sh``'s cluster), on a free port, with ``scram-sha-256`` password
authentication and durability switched off (it is thrown away). PostgreSQL refuses to run as root, so when we are root
``initdb`` and ``pg_ctl`` run as the ``postgres`` system user, in a temporary directory that user owns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

MIN_MAJOR = 15
PG_LIB = Path("/usr/lib/postgresql")
RUN_AS = "postgres"
ADMIN_USER = "postgres"
STATE_FILE = "cluster.json"
MAX_CONNECTIONS = 200

# Settings appended to postgresql.conf. Durability is off: the cluster is thrown away after the run.
_SETTINGS = """
listen_addresses = '{listen}'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = {max_connections}
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
log_min_messages = warning
"""


class ClusterError(RuntimeError):
    """The local cluster could not be created, started or stopped."""


def installed_bin_dirs(min_major: int = MIN_MAJOR) -> list[tuple[int, Path]]:
    """``(major, bin dir)`` of the installed server versions >= ``min_major``, highest first."""
    found: list[tuple[int, Path]] = []
    if PG_LIB.is_dir():
        for entry in PG_LIB.iterdir():
            if entry.name.isdigit() and (entry / "bin" / "initdb").is_file():
                major = int(entry.name)
                if major >= min_major:
                    found.append((major, entry / "bin"))
    return sorted(found, reverse=True)


BIN_ENV = "MIGRATOR_TEST_PG_BIN"


def env_bin_dir() -> tuple[int, Path] | None:
    """``(major, bin dir)`` from MIGRATOR_TEST_PG_BIN, or None when it is unset."""
    value = os.environ.get(BIN_ENV)
    if not value:
        return None
    bin_dir = Path(value)
    postgres = bin_dir / "postgres"
    if not (postgres.is_file() and os.access(postgres, os.X_OK)):
        raise FileNotFoundError(f"{BIN_ENV}={value}: no executable postgres there (scripts/fetch-postgres.sh MAJOR)")
    out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=True, timeout=30)
    match = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    if match is None:
        raise ValueError(f"{BIN_ENV}={value}: cannot read the major from {out.stdout.strip()!r}")
    return int(match.group(1)), bin_dir


def find_server_bin(min_major: int = MIN_MAJOR) -> tuple[int, Path] | None:
    """The server of MIGRATOR_TEST_PG_BIN (any major: an explicit choice), else the highest installed one
    (>= ``min_major``), or None."""
    chosen = env_bin_dir()
    if chosen is not None:
        return chosen
    dirs = installed_bin_dirs(min_major)
    return dirs[0] if dirs else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _must_switch_user() -> bool:
    return os.geteuid() == 0


def _as_pg_user(argv: Sequence[str]) -> list[str]:
    if _must_switch_user():
        return ["runuser", "-u", RUN_AS, "--", *argv]
    return list(argv)


def _run(argv: Sequence[str], *, what: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        _as_pg_user(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise ClusterError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def derived_password(secret: str, role: str) -> str:
    """A password for ``role`` derived from a server secret: the same for every pytest worker."""
    return hashlib.sha256(f"{secret}/{role}".encode()).hexdigest()[:32]


@dataclass
class LocalCluster:
    """A running (or stopped) throwaway cluster; ``base`` holds data dir, socket, log and state file."""

    base: Path
    bin_dir: Path
    major: int
    port: int
    admin_user: str
    admin_password: str
    host: str = "127.0.0.1"
    # Extra address to listen on, and the clients (CIDR) allowed to log in through it.
    listen: str = ""
    allow: str = ""

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    # -- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, *, min_major: int = MIN_MAJOR, base: Path | None = None, listen: str = "", allow: str = ""
    ) -> LocalCluster:
        """initdb + start. Raises ClusterError (with the server log) when anything fails."""
        found = find_server_bin(min_major)
        if found is None:
            raise ClusterError(
                f"no PostgreSQL >= {min_major} server binaries under {PG_LIB} (install the 'postgresql' package)"
            )
        major, bin_dir = found
        if base is None:
            # postgres must be able to reach the directory: a TMPDIR under /root would not do.
            parent = "/tmp" if _must_switch_user() else None
            base = Path(tempfile.mkdtemp(prefix="migrator-pg-", dir=parent))
        else:
            base.mkdir(parents=True, exist_ok=False)
        if _must_switch_user():
            pw = pwd.getpwnam(RUN_AS)
            os.chown(base, pw.pw_uid, pw.pw_gid)
        cluster = cls(
            base=base,
            bin_dir=bin_dir,
            major=major,
            port=0,
            admin_user=ADMIN_USER,
            admin_password=secrets.token_urlsafe(18),
            listen=listen,
            allow=allow,
        )
        try:
            cluster._initdb()
            cluster._start()
        except BaseException:
            cluster.destroy()
            raise
        cluster.save_state()
        return cluster

    def _initdb(self) -> None:
        pwfile = self.base / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.admin_password + "\n")
        if _must_switch_user():
            pw = pwd.getpwnam(RUN_AS)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        try:
            _run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.admin_user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                what="initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if self.allow:
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.allow} scram-sha-256\n")

    def _start(self, attempts: int = 5) -> None:
        conf = self.data_dir / "postgresql.conf"
        original = conf.read_text()
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            conf.write_text(
                original
                + _SETTINGS.format(
                    listen=",".join(filter(None, ["127.0.0.1", self.listen])),
                    port=self.port,
                    socket_dir=self.base,
                    max_connections=MAX_CONNECTIONS,
                )
            )
            self.log_file.unlink(missing_ok=True)
            try:
                _run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "start",
                        "-w",
                        "-t",
                        "60",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                    ],
                    what="pg_ctl start",
                    timeout=90,
                )
            except ClusterError as exc:
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                # Another process may have taken the port between our probe and the bind: try another.
                if ("could not bind" in log or "already in use" in log) and attempt < attempts:
                    continue
                raise ClusterError(f"{exc}\n--- server log ---\n{log}") from exc
            self._wait_ready()
            return

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.admin_connect():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            # Immediate: nothing here is worth a shutdown checkpoint.
            _run(
                [str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D", str(self.data_dir)],
                what="pg_ctl stop",
                timeout=60,
            )

    def destroy(self) -> None:
        """Stop the server (if running) and remove its directory. Safe to call twice."""
        try:
            if self.data_dir.exists():
                self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- access ---------------------------------------------------------------------------------

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return connect_admin(self.host, self.port, self.admin_user, self.admin_password, dbname)

    def save_state(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "major": self.major,
            "port": self.port,
            "admin_user": self.admin_user,
            "admin_password": self.admin_password,
            "host": self.host,
        }
        path = self.base / STATE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)

    @classmethod
    def load(cls, base: Path) -> LocalCluster:
        state = json.loads((base / STATE_FILE).read_text())
        return cls(
            base=base,
            bin_dir=Path(state["bin_dir"]),
            major=int(state["major"]),
            port=int(state["port"]),
            admin_user=str(state["admin_user"]),
            admin_password=str(state["admin_password"]),
            host=str(state["host"]),
        )


# -- roles and databases, the CloudNativePG way ----------------------------------------------------

_ROLE_LOCK_KEY = 0x6D696772  # "migr": serialises role set-up of concurrent pytest workers on one server


def connect_admin(
    host: str, port: int, user: str, password: str, dbname: str = "postgres"
) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection as the server's administrator (clusters and servers share this)."""
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname=dbname, autocommit=True, connect_timeout=10
    )


def ensure_login_role(conn: psycopg.Connection[tuple[Any, ...]], name: str, password: str) -> None:
    """Create (or reset) a plain login role like CloudNativePG's application user.

    LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS. Idempotent and safe to run
    concurrently from several connections (serialised by a transaction-level advisory lock).
    """
    attrs = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}").format(
        sql.Literal(password)
    )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK_KEY,))
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
        conn.execute(sql.SQL("{} {} {}").format(verb, sql.Identifier(name), attrs))


def create_database(conn: psycopg.Connection[tuple[Any, ...]], name: str, owner: str) -> None:
    """``CREATE DATABASE name OWNER owner`` (must run in autocommit)."""
    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))


def drop_database(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> None:
    """Drop a database, terminating its sessions first (PostgreSQL 13+)."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- command line (scripts/demo.sh) ------------------------------------------------------------------

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _identifier(value: str) -> str:
    if not _IDENT.match(value):
        raise argparse.ArgumentTypeError(f"not a plain lower-case identifier: {value!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.pgcluster", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="create and start a cluster; print shell KEY=VALUE lines")
    start.add_argument("--dir", type=Path, help="directory to create for it (default: a new temp dir)")
    start.add_argument("--min-major", type=int, default=MIN_MAJOR)
    start.add_argument("--listen", default="", help="an address to listen on besides 127.0.0.1")
    start.add_argument("--allow", default="", help="CIDR of the clients allowed to log in through --listen")
    stop = sub.add_parser("stop", help="stop the cluster and remove its directory")
    stop.add_argument("--dir", type=Path, required=True)
    app = sub.add_parser("create-app-db", help="role owning a new database (CloudNativePG style); prints password")
    app.add_argument("--dir", type=Path, required=True)
    app.add_argument("--role", type=_identifier, required=True)
    app.add_argument("--database", type=_identifier, required=True)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            cluster = LocalCluster.create(min_major=args.min_major, base=args.dir, listen=args.listen, allow=args.allow)
            values = {
                "PGCLUSTER_DIR": str(cluster.base),
                "PGCLUSTER_HOST": cluster.host,
                "PGCLUSTER_PORT": str(cluster.port),
                "PGCLUSTER_MAJOR": str(cluster.major),
                "PGCLUSTER_ADMIN_USER": cluster.admin_user,
                "PGCLUSTER_ADMIN_PASSWORD": cluster.admin_password,
            }
            for key, value in values.items():
                print(f"{key}={shlex.quote(value)}")
        elif args.command == "stop":
            if (args.dir / STATE_FILE).exists():
                LocalCluster.load(args.dir).destroy()
        else:
            cluster = LocalCluster.load(args.dir)
            password = secrets.token_urlsafe(18)
            with cluster.admin_connect() as conn:
                ensure_login_role(conn, args.role, password)
                create_database(conn, args.database, args.role)
            print(password)
    except (ClusterError, psycopg.Error, OSError) as exc:
        print(f"pgcluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
