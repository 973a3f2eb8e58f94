"""A real Temporal server on two test databases, and the Go SDK client that drives it.

The server (``scripts/build-server.sh <release>``: ``go install go.temporal.io/server/cmd/server@<release>``) runs
all four services in one process on free loopback ports, its default and visibility stores (plugin ``postgres12``)
on the test PostgreSQL as the CloudNativePG-like app role. Its start-up schema check is the proof we want: a
server that accepts a workflow has accepted the schema. The client (``integration/temporalclient``, built by
``scripts/build-client.sh``) registers a namespace, runs a worker, starts, signals and lists workflows, and prints
JSON. Nothing here depends on pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from devtools.databases import PLUGIN, AppDb, PgServer
from devtools.pins import REPO_ROOT, cache_dir

CLIENT_SOURCE = REPO_ROOT / "integration" / "temporalclient"
NAMESPACE = "migrator-test"
# Seconds a server gets to take its first request (cold start with schema checks and shard acquisition).
START_SECONDS = 90.0
# A server refusing its schema exits well within this.
REFUSE_SECONDS = 60.0

# Temporal's membership (common/membership/ringpop/monitor.go, healthyHostLastHeartbeatCutoff): a member of
# cluster_membership that heartbeated within this is a join seed. A server stopped moments before leaves dead
# ports there, and a join that meets them runs out its maxJoinDuration before it retries (41 s seen; under load
# longer than a client's START_SECONDS). A server starting on a store another one used waits them out.
MEMBER_CUTOFF_SECONDS = 20.0
_LIVE_MEMBERS = """
SELECT extract(epoch FROM max(last_heartbeat) - (now() AT TIME ZONE 'UTC' - make_interval(secs => %s)))
FROM cluster_membership WHERE last_heartbeat > now() AT TIME ZONE 'UTC' - make_interval(secs => %s)
"""

_SERVICES = ("frontend", "history", "matching", "worker")
# The server records its membership port in cluster_membership.rpc_port, a SMALLINT: ports above 32767 make it
# fail at start ("value out of range for type smallint"), and the kernel's ephemeral ports start at 32768.
_PORT_RANGE = (20000, 32767)


def free_low_port(taken: set[int]) -> int:
    """A loopback TCP port below 32768 that is free now (and not in ``taken``)."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def server_path(release: str) -> Path:
    """Where ``scripts/build-server.sh <release>`` caches the server (beside build-tool.sh's ``sql``)."""
    return cache_dir() / f"temporal-{release}" / "bin" / "server"


def client_path() -> Path:
    """Where ``scripts/build-client.sh`` caches the client: keyed by the same hash of its sources."""
    digest = hashlib.sha256()
    for part in [CLIENT_SOURCE / "go.mod", CLIENT_SOURCE / "go.sum", *sorted(CLIENT_SOURCE.glob("*.go"))]:
        digest.update(part.read_bytes())
    return cache_dir() / f"temporalclient-{digest.hexdigest()[:16]}" / "temporalclient"


def find_binary(path: Path, build: str) -> tuple[Path | None, str]:
    """``(path, "")`` when the binary is there, else ``(None, the command that builds it)``."""
    if path.is_file() and os.access(path, os.X_OK):
        return path, ""
    return None, f"{path} not found: run {build}"


def _datastore(db: AppDb, max_conns: int) -> dict[str, Any]:
    return {
        "sql": {
            "pluginName": PLUGIN,
            "databaseName": db.name,
            "connectAddr": f"{db.server.host}:{db.server.port}",
            "connectProtocol": "tcp",
            "user": db.user,
            "password": db.password,
            "maxConns": max_conns,
            "maxIdleConns": max_conns,
            "maxConnLifetime": "1h",
        }
    }


def server_config(default: AppDb, visibility: AppDb, ports: dict[str, int]) -> dict[str, Any]:
    """The development-postgres12 configuration of the release, on our databases and ``ports``."""
    services = {
        name: {
            "rpc": {
                "grpcPort": ports[f"{name}-grpc"],
                "membershipPort": ports[f"{name}-membership"],
                "bindOnLocalHost": True,
            }
        }
        for name in _SERVICES
    }
    services["frontend"]["rpc"]["httpPort"] = ports["frontend-http"]
    return {
        "log": {"stdout": True, "level": "warn"},
        "persistence": {
            "defaultStore": "default",
            "visibilityStore": "visibility",
            "numHistoryShards": 2,
            "datastores": {"default": _datastore(default, 10), "visibility": _datastore(visibility, 4)},
        },
        "global": {"membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"}},
        "services": services,
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {
                "active": {
                    "enabled": True,
                    "initialFailoverVersion": 1,
                    "rpcName": "frontend",
                    "rpcAddress": f"127.0.0.1:{ports['frontend-grpc']}",
                }
            },
        },
        "dcRedirectionPolicy": {"policy": "noop"},
    }


@dataclass
class TemporalServer:
    """One server process (all services) on two databases; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    binary: Path
    default: AppDb
    visibility: AppDb
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="temporal-server-")))
    process: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports['frontend-grpc']}"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def seconds_until_members_expire(self) -> float:
        """How long until no member of the default store is a join seed any more (0: none is; so is a store
        without the table yet)."""
        with self.default.connect() as conn:
            try:
                row = conn.execute(_LIVE_MEMBERS, (MEMBER_CUTOFF_SECONDS, MEMBER_CUTOFF_SECONDS)).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0.0
        return 0.0 if row is None or row[0] is None else float(row[0])

    def wait_for_stopped_members(self) -> None:
        """Until the members a stopped server left are no join seeds (bounded: a server still running on the store
        keeps heartbeating, and that is a test's mistake)."""
        deadline = time.monotonic() + MEMBER_CUTOFF_SECONDS * 2
        while (left := self.seconds_until_members_expire()) > 0:
            if time.monotonic() > deadline:
                raise ServerError(
                    f"cluster_membership of {self.default.name} still has live members: is a server running?"
                )
            time.sleep(min(left, 1.0) + 0.1)

    def start(self) -> TemporalServer:
        """Write the configuration (JSON is YAML) with fresh ports and start the server in the background, once
        the members a server stopped before left in the store are no join seeds."""
        self.wait_for_stopped_members()
        names = [f"{s}-{kind}" for s in _SERVICES for kind in ("grpc", "membership")] + ["frontend-http"]
        taken: set[int] = set()
        for name in names:
            self.ports[name] = free_low_port(taken)
            taken.add(self.ports[name])
        config = self.base / "config"
        config.mkdir(exist_ok=True)
        path = config / "migrator.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the app role's password
        with os.fdopen(fd, "w") as f:
            json.dump(server_config(self.default, self.visibility, self.ports), f)
        with self.log_file.open("wb") as log:
            # --root/--config/--env: the only way to name a config file that v1.29 and v1.32 both accept.
            self.process = subprocess.Popen(
                [str(self.binary), "--root", str(self.base), "--config", "config", "--env", "migrator", "start"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.base,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Until the frontend accepts TCP connections; raises (with the log) if the server exits first."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.exited(0)
            if code is not None:
                raise ServerError(f"the server exited {code} while starting:\n{self.log()[-4000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.ports["frontend-grpc"]), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError(f"the frontend did not listen within {timeout}s:\n{self.log()[-4000:]}") from None
                time.sleep(0.5)

    def exited(self, timeout: float) -> int | None:
        """The exit code if the server ends within ``timeout`` seconds, else None (still running)."""
        assert self.process is not None
        if timeout == 0:
            return self.process.poll()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if self.exited(30) is None:
                self.process.kill()
                self.process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class ServerError(RuntimeError):
    """The server exited or never listened; the message holds its log's tail."""


class ClientError(RuntimeError):
    """The client exited non-zero; the message holds its stderr and the server's log tail."""


@dataclass(frozen=True)
class Client:
    """The Go SDK client against one server."""

    binary: Path
    server: TemporalServer

    def __call__(self, command: str, *args: str, timeout: float = START_SECONDS) -> dict[str, Any]:
        argv = [str(self.binary), command, "-address", self.server.address, "-namespace", NAMESPACE, *args]
        argv += ["-timeout", f"{int(timeout)}s"]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 30, check=False, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise ClientError(
                f"temporalclient {command} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}\n"
                f"--- server log (tail) ---\n{self.server.log()[-4000:]}"
            )
        value = json.loads(proc.stdout)
        assert isinstance(value, dict)
        return value


# -- command line (scripts/demo.sh) ------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """What ``exercise`` did: the workflows started, the results of the signalled ones, what visibility lists."""

    started: list[dict[str, Any]]
    results: dict[str, str]
    listed: dict[str, dict[str, Any]]


def exercise(client: Client) -> Exercise:
    """Register the namespace, run one workflow that completes and one that waits for a signal, signal it, and
    list both through visibility once both are closed."""
    client("register")
    started = client("start", "-completed", "1", "-signal", "1", "-timer", "0")["workflows"]
    signalled = ",".join(w["id"] for w in started if w["kind"] == "signal")
    results = client("finish", "-signal-ids", signalled, "-wait-ids", signalled)["results"]
    count = str(len(started))
    listed = client("list", "-expect", count, "-expect-completed", count)["workflows"]
    return Exercise(started, results, {w["id"]: w for w in listed})


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.temporal_server demo ...``: the demo's last step. Passwords come from the
    environment (TEMPORAL_PASSWORD, VISIBILITY_PASSWORD), never from argv."""
    parser = argparse.ArgumentParser(prog="python -m devtools.temporal_server", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a workflow on two migrated databases, print the listed workflows (JSON)")
    demo.add_argument("--server", type=Path, required=True, help="scripts/build-server.sh's binary")
    demo.add_argument("--client", type=Path, required=True, help="scripts/build-client.sh's binary")
    demo.add_argument("--host", required=True)
    demo.add_argument("--port", type=int, required=True)
    demo.add_argument("--db", required=True, help="database (and role) of the default store")
    demo.add_argument("--visibility-db", required=True, help="database (and role) of the visibility store")
    args = parser.parse_args(argv)
    pg = PgServer(args.host, args.port, admin_user="", admin_password="", major=0)
    default = AppDb(pg, args.db, args.db, os.environ["TEMPORAL_PASSWORD"])
    visibility = AppDb(pg, args.visibility_db, args.visibility_db, os.environ["VISIBILITY_PASSWORD"])
    server = TemporalServer(args.server, default, visibility)
    try:
        server.start().wait_ready()
        done = exercise(Client(args.client, server))
    except (ServerError, ClientError) as exc:
        print(f"temporal_server: {exc}", file=sys.stderr)
        return 1
    finally:
        server.close()
    print(json.dumps(list(done.listed.values()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
