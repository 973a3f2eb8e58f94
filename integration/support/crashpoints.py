"""Crash points of the real temporal-sql-tool, produced from the database side.

A crash point is (store, version V, k): versions below V recorded, the tool killed after the k-th statement of V.
For k < n the tool really runs ``update-schema`` and statement k+1 really fails inside PostgreSQL; for k = n
("complete but unrecorded") all statements of V succeed and the tool's own version write fails. Nothing imitates
the tool: the vendor's statements are executed by the tool, and the interruption is an error raised by the server.

How (installed by the superuser in the crash database only, removed again before the migrator runs):

* a private schema ``crash_matrix`` owned by the superuser, with a log of the DDL statements seen;
* an EVENT TRIGGER on ``ddl_command_start`` whose SECURITY DEFINER function counts top-level DDL statements
  (one per (backend, statement_timestamp()), so the commands of an extension script count once with their
  ``CREATE EXTENSION``) and raises at the chosen one, before it does anything;
* for a failure at a DML statement (v1.0's seed ``INSERT``) or at the version write (k = n): a statement-level
  BEFORE trigger on that table that raises once exactly the DDL statements before it have run. When the table
  does not exist yet (it is created earlier in the same version), a ``ddl_command_end`` event trigger adds the
  row trigger as soon as the table appears.

The error text avoids "already exist" and "not found": the tool treats those as "duplicate, ignore" and goes on.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devtools.databases import AppDb, PgServer
from devtools.pins import Store, resolve_schema_dir, versioned_dir
from integration.support.processes import run_tool_binary
from migrator.core.statements import Statement
from migrator.source.tree import load_vendor_schema

MARKER = "crash-matrix: interrupted"
PRIVATE_SCHEMA = "crash_matrix"
VERSION_TABLE = "schema_version"
_DML = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_DO = re.compile(r"^\s*DO\b", re.IGNORECASE)
_STORES: tuple[Store, ...] = ("temporal", "visibility")


def normalise_sql(text: str) -> str:
    """A statement as the tool logs and sends it: whitespace collapsed, no trailing semicolon."""
    return " ".join(text.split()).rstrip(";").rstrip()


def is_dml(statement: Statement) -> bool:
    return bool(_DML.match(statement.text))


def is_do_block(statement: Statement) -> bool:
    """A DO block fires the DDL event trigger only when it runs DDL, which depends on the database's state."""
    return bool(_DO.match(statement.text))


def dml_table(statement: Statement) -> str:
    if statement.probe is not None:
        return statement.probe.table
    match = re.match(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([A-Za-z_][A-Za-z0-9_]*)", statement.text, re.I)
    if match is None:
        raise ValueError(f"cannot tell which table this DML statement writes: {statement.text[:80]!r}")
    return match.group(1)


@dataclass(frozen=True)
class CrashPoint:
    """The tool killed after statement ``applied`` of ``version`` (``applied == total``: before the version write)."""

    store: Store
    version: str
    previous: str  # the version recorded before V ("0.0" for the first)
    applied: int
    statements: tuple[Statement, ...] = field(repr=False, compare=False)
    # Whether each statement fires the DDL event trigger, as observed by ``probe_fires``; None: every non-DML
    # statement does (true for any version without a DO block).
    fires: tuple[bool, ...] | None = field(default=None, repr=False, compare=False)

    def _fires(self, index: int) -> bool:
        return self.fires[index] if self.fires is not None else not is_dml(self.statements[index])

    @property
    def total(self) -> int:
        return len(self.statements)

    @property
    def unrecorded(self) -> bool:
        return self.applied == self.total

    @property
    def id(self) -> str:
        return f"{self.store}-v{self.version}-k{self.applied:02d}of{self.total}"

    def ddl_before(self, count: int) -> int:
        """How many of the first ``count`` statements fire DDL event triggers."""
        return sum(1 for index in range(min(count, self.total)) if self._fires(index))

    def applied_ddl(self) -> list[str]:
        """The DDL statements the tool must have completed before the crash, normalised."""
        return [normalise_sql(s.text) for i, s in enumerate(self.statements[: self.applied]) if self._fires(i)]

    def describe_failure(self) -> str:
        if self.unrecorded:
            return f"the version write of {self.version} (after all {self.total} statements)"
        return f"statement {self.applied + 1}/{self.total}: {normalise_sql(self.statements[self.applied].text)[:90]}"


def crash_points(schema_dir: Path) -> list[CrashPoint]:
    """Every crash point of both stores: k = 0..n for every versioned directory, oldest first."""
    points: list[CrashPoint] = []
    for store in _STORES:
        previous = "0.0"
        for item in load_vendor_schema(schema_dir, store).versions:
            boundaries = range(len(item.statements) + 1)
            points.extend(CrashPoint(store, item.name, previous, k, item.statements) for k in boundaries)
            previous = item.name
    return points


def middle_point(schema_dir: Path, store: Store, version: str) -> CrashPoint:
    """The crash point in the middle of ``version`` of a tree (k = n for a one-statement version: done but
    unrecorded)."""
    versions = load_vendor_schema(schema_dir, store).versions
    names = [item.name for item in versions]
    index = names.index(version)
    target = versions[index]
    previous = names[index - 1] if index else "0.0"
    return CrashPoint(store, version, previous, max(1, len(target.statements) // 2), target.statements)


def expected_count(schema_dir: Path) -> tuple[int, int]:
    """(statement boundaries k < n, versions): computed independently of ``crash_points``."""
    statements = versions = 0
    for store in _STORES:
        for item in load_vendor_schema(schema_dir, store).versions:
            statements += len(item.statements)
            versions += 1
    return statements, versions


# -- the server-side interruption ------------------------------------------------------------------------

_INSTALL = """
CREATE SCHEMA {schema};
REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
CREATE TABLE {schema}.seen (n int PRIMARY KEY, pid int NOT NULL, started timestamptz NOT NULL, query text);
CREATE TABLE {schema}.plan (fail_ddl int, dml_table text, dml_after int);
INSERT INTO {schema}.plan VALUES ({fail_ddl}, {dml_table}, {dml_after});

CREATE FUNCTION {schema}.fail_dml() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF (SELECT count(*) FROM {schema}.seen) = (SELECT dml_after FROM {schema}.plan) THEN
        RAISE EXCEPTION '{marker} at % on %', TG_OP, TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$body$;

CREATE FUNCTION {schema}.arm_dml() RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    target text := (SELECT dml_table FROM {schema}.plan);
BEGIN
    IF target IS NOT NULL AND to_regclass(format('public.%I', target)) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'crash_matrix_fail'
                       AND tgrelid = to_regclass(format('public.%I', target))) THEN
        EXECUTE format('CREATE TRIGGER crash_matrix_fail BEFORE INSERT OR UPDATE OR DELETE ON public.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION {schema}.fail_dml()', target);
    END IF;
END
$body$;

CREATE FUNCTION {schema}.on_ddl_start() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    last {schema}.seen%ROWTYPE;
    next_n int;
BEGIN
    SELECT * INTO last FROM {schema}.seen ORDER BY n DESC LIMIT 1;
    IF FOUND AND last.pid = pg_backend_pid() AND last.started = statement_timestamp() THEN
        RETURN;  -- a command nested in the statement already counted (extension script, our own trigger)
    END IF;
    next_n := coalesce(last.n, 0) + 1;
    IF next_n = (SELECT fail_ddl FROM {schema}.plan) THEN
        RAISE EXCEPTION '{marker} before DDL statement % (%)', next_n, TG_TAG;
    END IF;
    INSERT INTO {schema}.seen VALUES (next_n, pg_backend_pid(), statement_timestamp(), current_query());
END
$body$;

CREATE FUNCTION {schema}.on_ddl_end() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    PERFORM {schema}.arm_dml();
END
$body$;

SELECT {schema}.arm_dml();
CREATE EVENT TRIGGER crash_matrix_start ON ddl_command_start EXECUTE FUNCTION {schema}.on_ddl_start();
CREATE EVENT TRIGGER crash_matrix_end ON ddl_command_end EXECUTE FUNCTION {schema}.on_ddl_end();
"""


def install_interruption(conn: psycopg.Connection[tuple[Any, ...]], point: CrashPoint | None) -> None:
    """As the superuser, in the crash database: make the tool fail right after statement ``point.applied``
    (None: only log the DDL statements, for ``probe_fires``)."""
    fail_ddl: int | None = None
    table: str | None = None
    dml_after: int | None = None
    if point is None:
        pass
    elif point.unrecorded:
        table, dml_after = VERSION_TABLE, point.ddl_before(point.total)
    elif is_dml(point.statements[point.applied]):
        table, dml_after = dml_table(point.statements[point.applied]), point.ddl_before(point.applied)
    else:
        # The next statement that fires after the first k: statement k+1 itself, or (when that is a DO block
        # that runs no DDL, so leaves nothing behind) the first firing one after it.
        fail_ddl = point.ddl_before(point.applied) + 1
    script = _INSTALL.format(
        schema=PRIVATE_SCHEMA,
        marker=MARKER,
        fail_ddl=sql.Literal(fail_ddl).as_string(conn),
        dml_table=sql.Literal(table).as_string(conn),
        dml_after=sql.Literal(dml_after).as_string(conn),
    )
    conn.execute(script.encode())


def seen_statements(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    rows = conn.execute(sql.SQL("SELECT query FROM {}.seen ORDER BY n").format(sql.Identifier(PRIVATE_SCHEMA)))
    return [normalise_sql(str(query)) for (query,) in rows.fetchall()]


def remove_interruption(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Drop everything ``install_interruption`` added (event triggers first), leaving only the vendor's objects."""
    conn.execute("DROP EVENT TRIGGER IF EXISTS crash_matrix_start")
    conn.execute("DROP EVENT TRIGGER IF EXISTS crash_matrix_end")
    triggers = conn.execute(
        "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = 'crash_matrix_fail'"
    ).fetchall()
    for (relation,) in triggers:
        conn.execute(sql.SQL("DROP TRIGGER crash_matrix_fail ON {}").format(sql.SQL(str(relation))))
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(PRIVATE_SCHEMA)))


def interrupt_update(
    tool: Path, db: AppDb, schema_dir: Path, point: CrashPoint
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the real tool's ``update-schema`` on ``db`` (at ``point.previous``) with the interruption installed;
    return its result and the DDL statements it completed, leaving only the vendor's objects behind."""
    with db.server.admin_connect(db.name) as conn:
        install_interruption(conn, point)
    crashed = run_tool_binary(tool, db, "update-schema", "-d", str(versioned_dir(schema_dir, point.store)))
    with db.server.admin_connect(db.name) as conn:
        seen = seen_statements(conn)
        remove_interruption(conn)
        assert leftovers(conn) == []
    return crashed, seen


def probe_fires(tool: Path, db: AppDb, schema_dir: Path, point: CrashPoint) -> CrashPoint:
    """``point`` with ``fires`` observed: the tool runs ``point.version`` on ``db`` (a throwaway copy at
    ``point.previous``) with the DDL logged, and a statement fires iff the trigger saw it (a DO block's DDL is
    logged under the DO block's text). Only versions with a DO block need it."""
    with db.server.admin_connect(db.name) as conn:
        install_interruption(conn, None)
    done = run_tool_binary(
        tool, db, "update-schema", "-d", str(versioned_dir(schema_dir, point.store)), "-v", point.version
    )
    with db.server.admin_connect(db.name) as conn:
        seen = set(seen_statements(conn))
        remove_interruption(conn)
    if done.returncode != 0:
        raise RuntimeError(f"probing {point.store} v{point.version} failed: {done.stderr[-2000:]}")
    return replace(point, fires=tuple(normalise_sql(s.text) in seen for s in point.statements))


def leftovers(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    """Anything of ours still in the database (must be empty before the migrator runs)."""
    rows = conn.execute(
        "SELECT 'event trigger ' || evtname FROM pg_event_trigger"
        " UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'crash_matrix%%'"
        " UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = %s",
        (PRIVATE_SCHEMA,),
    ).fetchall()
    return [str(row[0]) for row in rows]


# -- databases: templates at V-1, copies, the reference ------------------------------------------------


def seed_tables(schema_dir: Path, store: Store) -> list[str]:
    """Tables the vendor's DML statements write (their rows must match a clean install's)."""
    vendor = load_vendor_schema(schema_dir, store)
    return sorted({dml_table(s) for s in vendor.all_statements() if is_dml(s)})


def seed_rows(conn: psycopg.Connection[tuple[Any, ...]], tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of each seed table, sorted (duplicates kept, so a duplicated seed row shows)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for table in tables:
        rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))).fetchall()
        found[table] = sorted(rows, key=repr)
    return found


def drop_quietly(server: PgServer, name: str) -> None:
    with server.admin_connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def clone(server: PgServer, template: str, name: str, owner: str) -> None:
    """``CREATE DATABASE name TEMPLATE template OWNER owner``, then point its version row at its own name.

    The tool keys ``schema_version`` by database name, so a copy carries its template's name there; the row is
    renamed (nothing else changes) so the copy is what the bare tool would have left in a database of this name.
    """
    with server.admin_connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(owner)
            )
        )
    with server.admin_connect(name) as conn:
        conn.execute("UPDATE schema_version SET db_name = current_database() WHERE db_name = %s", (template,))


# -- terminal summary (the plugin prints it) ----------------------------------------------------------------

MATRIX_TEST = "test_crash_point_converges"


def summarise(terminalreporter: Any) -> None:
    """One line: crash points tried / converged (of the matrix's size) and the matrix's wall-clock duration."""
    reports = [
        report
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(getattr(report, "nodeid", None), str)
        and f"test_crash_matrix.py::{MATRIX_TEST}[" in report.nodeid
        and getattr(report, "when", None) in ("setup", "call", "teardown")
    ]
    if not reports:
        return
    outcome: dict[str, str] = {}
    for report in reports:
        if report.when == "call" or report.outcome != "passed":
            outcome.setdefault(report.nodeid, report.outcome)
            if report.outcome != "passed":
                outcome[report.nodeid] = report.outcome
    tried = sum(1 for value in outcome.values() if value != "skipped")
    converged = sum(1 for value in outcome.values() if value == "passed")
    starts = [float(report.start) for report in reports if hasattr(report, "start")]
    stops = [float(report.stop) for report in reports if hasattr(report, "stop")]
    busy = sum(float(report.duration) for report in reports)
    wall = max(stops) - min(starts) if starts and stops else 0.0
    size = ""
    schema_dir, _ = resolve_schema_dir()
    if schema_dir is not None:
        statements, versions = expected_count(schema_dir)
        whole = "whole matrix" if tried == statements + versions else "NOT the whole matrix"
        size = (
            f" of {statements + versions} ({statements} statement boundaries + {versions} unrecorded versions; {whole})"
        )
    skipped = sum(1 for value in outcome.values() if value == "skipped")
    terminalreporter.write_sep(
        "=",
        f"crash matrix: {tried} crash points tried{size}, {converged} converged, {tried - converged} failed, "
        f"{skipped} skipped; {wall:.1f}s from the first to the last (wall clock), {busy:.1f}s of test time",
    )
