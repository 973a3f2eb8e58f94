"""The single-node cluster of ``scripts/kube.sh``, seen from its network namespace: kubectl, helm, PostgreSQL.

The tests run inside the cluster's network namespace (``scripts/kube-test.sh`` starts pytest there), so the API
server and PostgreSQL are reached at the namespace's own address, never through the host's interfaces.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devtools.pgcluster import connect_admin, create_database, ensure_login_role

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "chart"
STATE_DIR = Path(os.environ.get("KUBE_STATE_DIR", "/var/tmp/temporal-migrator-kube"))


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (values shell-quoted or bare) as a dict."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = " ".join(shlex.split(value)) if value else ""
    return values


@dataclass(frozen=True)
class Store:
    """One store's database and the role owning it, as the chart's values name them."""

    schema: str  # temporal | visibility
    database: str
    role: str
    password: str


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]
    postgres: dict[str, str]

    @classmethod
    def load(cls, state_dir: Path = STATE_DIR) -> Cluster:
        return cls(read_env_file(state_dir / "env"), read_env_file(state_dir / "postgres.env"))

    @property
    def node_ip(self) -> str:
        return self.env["KUBE_NODE_IP"]

    @property
    def pg_port(self) -> int:
        return int(self.postgres["PGCLUSTER_PORT"])

    def run(
        self, *argv: str, stdin: str | None = None, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECONFIG": self.env["KUBECONFIG"]},
            check=False,
        )
        if check and proc.returncode:
            raise AssertionError(f"{shlex.join(argv)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.env["KUBECTL"], *args, stdin=stdin, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return document

    def apply(
        self, namespace: str, *objects: dict[str, Any], dry_run: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Server-side apply of ``objects`` (JSON on stdin: no value, secret or not, in an argv)."""
        extra = ["--dry-run=server"] if dry_run else []
        document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        return self.kubectl("apply", "-n", namespace, *extra, "-f", "-", stdin=json.dumps(document), check=False)

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run(self.env["HELM"], *args, check=check, timeout=timeout)

    # -- PostgreSQL ------------------------------------------------------------------------------------

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        # The tests run in the cluster's network namespace, where PostgreSQL also listens on loopback.
        return connect_admin(
            "127.0.0.1",
            self.pg_port,
            self.postgres["PGCLUSTER_ADMIN_USER"],
            self.postgres["PGCLUSTER_ADMIN_PASSWORD"],
            dbname,
        )

    def new_store(self, schema: str, name: str) -> Store:
        password = secrets.token_urlsafe(18)
        with self.admin() as conn:
            ensure_login_role(conn, name, password)
            create_database(conn, name, name)
        return Store(schema=schema, database=name, role=name, password=password)

    def schema_version(self, store: Store) -> str | None:
        with self.admin(store.database) as conn:
            exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return None
            row = conn.execute(
                "SELECT curr_version FROM schema_version WHERE db_name = %s", (store.database,)
            ).fetchone()
            return None if row is None else str(row[0])

    def newest_version(self, schema: str) -> str:
        """The newest version of the tree the image was built from (scripts/image-test.sh copies it)."""
        versioned = Path(self.env["TEMPORAL_SCHEMA_DIR"]) / "postgresql" / "v12" / schema / "versioned"
        versions = [tuple(int(p) for p in d.name[1:].split(".")) for d in versioned.iterdir() if d.is_dir()]
        return ".".join(str(p) for p in max(versions))


def wait_until(what: str, condition: Callable[[], Any], timeout: float = 300, every: float = 1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


@contextmanager
def holding_lock(cluster: Cluster, store: Store, table: str) -> Iterator[None]:
    """A transaction holding ACCESS SHARE on ``table``: DDL on it waits until the block ends."""
    with cluster.admin(store.database) as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(sql.Identifier(table)))
        yield
