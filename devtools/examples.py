"""Recapture every example output in the docs from real runs of the current code (`bash scripts/examples.sh`).

On a throwaway local PostgreSQL (devtools.pgcluster) with the pinned temporal-sql-tool and vendor tree, each
scenario sets up a database the way the field left it, runs the migrator as an operator would (console logs,
table output) and writes what it printed between ``<!-- example:NAME -->`` and ``<!-- /example:NAME -->`` in
README.md and docs/*.md. Timestamps, pids and durations are those of the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devtools.pgcluster import LocalCluster, create_database, ensure_login_role, free_port
from devtools.pins import REPO_ROOT, resolve_schema_dir, resolve_tool, versioned_dir

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PASSWORD = "example-only"


@dataclass
class Lab:
    cluster: LocalCluster
    tool: Path
    schema_dir: Path

    def admin(self, database: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        conn = self.cluster.admin_connect(database)
        conn.autocommit = True
        return conn

    def database(self, name: str, owner: str = "temporal") -> str:
        with self.admin() as conn:
            ensure_login_role(conn, "temporal", PASSWORD)
            create_database(conn, name, owner)
        return name

    def env(self, database: str, **overrides: str) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("SQL_", "MIGRATOR_"))}
        env.update(
            SQL_HOST=self.cluster.host,
            SQL_PORT=str(self.cluster.port),
            SQL_USER="temporal",
            SQL_PASSWORD=PASSWORD,
            SQL_DATABASE=database,
            MIGRATOR_SCHEMA_DIR=str(self.schema_dir),
            TEMPORAL_SQL_TOOL=str(self.tool),
            MIGRATOR_LOG_FORMAT="console",
            MIGRATOR_TERMINATION_LOG="/nonexistent",
        )
        env.update(overrides)
        return env

    def tool_run(self, database: str, *args: str) -> None:
        """The bare tool, as a hook runs it (connection flags first; the password through PGPASSWORD)."""
        argv = [str(self.tool), "--ep", self.cluster.host, "-p", str(self.cluster.port), "-u", "temporal"]
        argv += ["--db", database, "--pl", "postgres12", *args]
        subprocess.run(argv, env=dict(os.environ, SQL_PASSWORD=PASSWORD), check=True, capture_output=True)

    def bring_to(self, database: str, store: str, version: str) -> None:
        self.tool_run(database, "setup-schema", "-v", "0.0")
        self.tool_run(database, "update-schema", "-d", str(versioned_dir(self.schema_dir, store)), "-v", version)  # type: ignore[arg-type]

    def migrator(self, database: str, shown: str, *args: str, **env: str) -> str:
        """``$ temporal-migrator <shown>`` followed by what the run printed (stdout, then stderr) and its status."""
        proc = subprocess.run(
            [sys.executable, "-m", "migrator", *args],
            env=self.env(database, **env),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        return transcript(shown, proc.stdout, proc.stderr, proc.returncode)


def transcript(shown: str, stdout: str, stderr: str, status: int) -> str:
    lines = [f"$ temporal-migrator {shown}", *stdout.rstrip("\n").splitlines(), *stderr.rstrip("\n").splitlines()]
    if status:
        lines.append(f"$ echo $?\n{status}")
    return "\n".join(line for line in lines if line is not None)


TOOL_EVENTS = ("tool.started", "tool.output")


def shorten(text: str, drop: tuple[str, ...] = TOOL_EVENTS) -> str:
    """``text`` without the log lines of the events ``drop`` (long, and the same in every run); a last line says
    how many were left out, so a reader knows the run printed more."""
    lines = text.splitlines()
    kept = [line for line in lines if not any(f"] {event} " in line for event in drop)]
    if len(kept) == len(lines):
        return text
    return "\n".join([*kept, f"… ({len(lines) - len(kept)} lines of {', '.join(drop)} left out)"])


def fold(text: str, marker: str, keep: int) -> str:
    """``text`` with only the first ``keep`` lines holding ``marker``; one line says how many more there were."""
    lines = text.splitlines()
    holding = [i for i, line in enumerate(lines) if marker in line]
    cut = holding[keep:]
    if not cut:
        return text
    note = f"… ({len(cut)} more lines like the one above)"
    return "\n".join([*lines[: cut[0]], note, *(line for i, line in enumerate(lines) if i > cut[0] and i not in cut)])


@contextmanager
def blocker(lab: Lab, database: str, table: str, seconds: float) -> Iterator[None]:
    """A report session that read ``table`` and keeps its transaction open for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(
            host=lab.cluster.host,
            port=lab.cluster.port,
            user=lab.cluster.admin_user,
            password=lab.cluster.admin_password,
            dbname=database,
            application_name="nightly-report",
        ) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(30)
    try:
        yield
    finally:
        thread.join()


# --- scenarios: each returns {example name: transcript} -----------------------------------------------------------


def half_applied(lab: Lab) -> dict[str, str]:
    """A crash inside v1.16: its first statement done, the version not recorded (then status, plan, migrate)."""
    db = lab.database("temporal")
    lab.bring_to(db, "temporal", "1.15")
    with lab.admin(db) as conn:
        conn.execute("ALTER TABLE current_executions DROP COLUMN data_encoding")
    return {
        "status": lab.migrator(db, "status", "status", "--output", "table"),
        "plan": lab.migrator(db, "plan", "plan", "--output", "table"),
        "migrate": shorten(lab.migrator(db, "migrate", "migrate"), ("plan.made", "step.done", *TOOL_EVENTS)),
    }


def duplicate_key(lab: Lab) -> dict[str, str]:
    """The field's retry: v1.0 ran completely (its INSERT included) but the tool died before recording it."""
    db = lab.database("temporal_retry")
    lab.bring_to(db, "temporal", "1.0")
    with lab.admin(db) as conn:
        conn.execute("UPDATE schema_version SET curr_version = '0.0'")
        conn.execute("DELETE FROM schema_update_history WHERE new_version = '1.0'")
    shown = fold(lab.migrator(db, "plan", "plan", "--output", "table"), "skip-statement  1.0", 3)
    return {"duplicate-key": fold(shown, "changes the catalog only", 2)}


def waiting(lab: Lab) -> dict[str, str]:
    """`wait` in a Temporal pod's init container: before the store exists, then after `migrate`."""
    db = lab.database("temporal_visibility")
    flags = ("--schema", "visibility", "--wait-timeout", "3")
    before = lab.migrator(db, "wait " + " ".join(flags), "wait", *flags)
    lab.migrator(db, "migrate --schema visibility", "migrate", "--schema", "visibility")
    after = lab.migrator(db, "wait --schema visibility", "wait", "--schema", "visibility")
    return {"wait-timeout": before, "wait": after}


def privileges(lab: Lab) -> dict[str, str]:
    """PostgreSQL 15: a database another role owns, so `public` takes no CREATE from ours."""
    db = lab.database("temporal_cnpg", owner=lab.cluster.admin_user)
    with lab.admin(db) as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO temporal").format(sql.Identifier(db)))
    with tempfile.TemporaryDirectory() as scratch:
        message = Path(scratch) / "termination-log"
        message.touch()  # Kubernetes makes the file; the migrator never creates it
        run = lab.migrator(db, "migrate", "migrate", MIGRATOR_TERMINATION_LOG=str(message))
        written = message.read_text()
    return {"no-create": run, "termination": f"$ cat /dev/termination-log\n{written}"}


def bad_password(lab: Lab) -> dict[str, str]:
    db = lab.database("temporal_password")
    return {"bad-password": lab.migrator(db, "migrate", "migrate", SQL_PASSWORD="not-the-role-password")}


def unreachable(lab: Lab) -> dict[str, str]:
    port = str(free_port())
    shown = "migrate --connect-timeout 5"
    return {"unreachable": lab.migrator("temporal", shown, "migrate", "--connect-timeout", "5", SQL_PORT=port)}


def blocked(lab: Lab) -> dict[str, str]:
    """A report holds `executions_visibility` for 8 s while v1.14 needs it; a second migrator meanwhile."""
    db = lab.database("temporal_visibility_live")
    lab.bring_to(db, "visibility", "1.13")
    first: dict[str, str] = {}

    def migrate() -> None:
        flags = ("--schema", "visibility", "--ddl-lock-timeout", "2")
        first["blocked"] = lab.migrator(db, "migrate " + " ".join(flags), "migrate", *flags)

    with blocker(lab, db, "executions_visibility", 8):
        thread = threading.Thread(target=migrate)
        thread.start()
        time.sleep(3)
        flags = ("--schema", "visibility", "--lock-timeout", "2")
        second = lab.migrator(db, "migrate " + " ".join(flags), "migrate", *flags)
        thread.join()
    return {"blocked": shorten(first["blocked"]), "lock-timeout": second}


def online_plan(lab: Lab) -> dict[str, str]:
    """A visibility store at 1.12: v1.13 and v1.14 rewrite executions_visibility, planned online."""
    db = lab.database("temporal_visibility_2")
    lab.bring_to(db, "visibility", "1.12")
    flags = ("--schema", "visibility", "--rewrite-mode", "online", "--output", "table")
    return {"online-plan": fold(lab.migrator(db, "plan " + " ".join(flags), "plan", *flags), "skip-statement  1.13", 3)}


SCENARIOS: list[Callable[[Lab], dict[str, str]]] = [
    half_applied,
    duplicate_key,
    waiting,
    privileges,
    bad_password,
    unreachable,
    blocked,
    online_plan,
]


def write(examples: dict[str, str]) -> list[str]:
    """Put each example in its block; returns the names no document has a block for."""
    used: set[str] = set()
    for path in DOCUMENTS:
        text = path.read_text()
        for name, output in examples.items():
            pattern = re.compile(
                rf"(<!-- example:{re.escape(name)} -->\n).*?(<!-- /example:{re.escape(name)} -->)", re.S
            )
            if pattern.search(text):
                used.add(name)
                block = f"```console\n{output}\n```\n".replace("\\", "\\\\")
                text = pattern.sub(rf"\g<1>{block}\g<2>", text)
        path.write_text(text)
    return sorted(set(examples) - used)


def main() -> int:
    tool, how = resolve_tool()
    schema_dir, where = resolve_schema_dir()
    if tool is None or schema_dir is None:
        print(how if tool is None else where, file=sys.stderr)
        return 2
    cluster = LocalCluster.create()
    try:
        lab = Lab(cluster, tool, schema_dir)
        examples: dict[str, str] = {}
        for scenario in SCENARIOS:
            print(f"capturing {scenario.__name__}", file=sys.stderr)
            examples.update(scenario(lab))
    finally:
        cluster.destroy()
    unused = write(examples)
    if unused:
        print(f"no document shows: {', '.join(unused)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
