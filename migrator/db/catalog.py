"""Read a store's state: catalog, version row, privileges. Read-only.

The queries run through `migrator.db.driver` (``rows``), each in its own autocommit statement, so no transaction
(and no snapshot) stays open on our connection: the vendor's ``CREATE INDEX CONCURRENTLY`` would otherwise
wait for us. Everything is read in ``current_schema()``, so ``search_path`` in --connect-attributes moves the
whole run to that schema, as it moves the tool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from migrator.core.sizes import Sizes, TableSize
from migrator.core.state import Access, Catalog, ColumnInfo, State
from migrator.core.statements import Kind, RowProbe
from migrator.core.vendor import VendorSchema
from migrator.errors import LockWaitError

_ACCESS = """
SELECT current_user,
       pg_get_userbyid(d.datdba),
       coalesce(current_schema(), 'public'),
       current_setting('server_version_num')::int,
       coalesce(has_schema_privilege(current_schema(), 'CREATE'), false),
       has_database_privilege(current_database(), 'CREATE'),
       pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'
  FROM pg_database d WHERE d.datname = current_database()
"""
_TABLES = "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind IN ('r', 'p')"
_COLUMNS = """
SELECT c.relname || '.' || a.attname, a.attnotnull, a.atthasdef
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""
_INDEXES = """
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace = %s::regnamespace
"""
_FUNCTIONS = "SELECT proname FROM pg_proc WHERE pronamespace = %s::regnamespace"
_EXTENSIONS = "SELECT extname FROM pg_extension"
_VERSION_ROWS = "SELECT db_name, curr_version FROM schema_version WHERE version_partition = 0"

Rows = Callable[[sql.Composable | str, Sequence[Any]], list[tuple[Any, ...]]]


def _row_present(rows: Rows, probe: RowProbe) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ({}) IN (VALUES {}))").format(
        sql.Identifier(probe.table),
        sql.SQL(", ").join(sql.Identifier(column) for column in probe.columns),
        sql.SQL(probe.values_sql),
    )
    found = rows(query, ())
    return bool(found and found[0][0])


STORED = "stored"


def observe(rows: Rows, database: str, vendor: VendorSchema, *, seeds_after: str | None = STORED) -> State:
    """Observe the store; ``database`` is the ``db_name`` key of ``schema_version`` (the tool's --db).

    Seed rows are probed for the versions after ``seeds_after``: by default the stored version (only pending
    versions matter to a plan); verification passes the version a run started from (the rows it added; older
    ones the server may since have updated).
    """
    access_rows = rows(_ACCESS, ())
    assert access_rows, "current_database() is always in pg_database"
    access = Access(*access_rows[0])
    schema = access.schema
    tables = frozenset(row[0] for row in rows(_TABLES, (schema,)))
    version: str | None = None
    others: list[str] = []
    if "schema_version" in tables:
        for db_name, curr_version in rows(_VERSION_ROWS, ()):
            if db_name == database:
                version = curr_version
            else:
                others.append(db_name)
    seeds: dict[str, bool] = {}
    for pending in vendor.after(version if seeds_after == STORED else seeds_after):
        for statement in pending.read_statements or ():  # unread: the shell reads them, then observes again
            for effect in statement.effects:
                if effect.ref.kind is Kind.ROW and statement.probe is not None:
                    seeds[effect.ref.name] = statement.probe.table in tables and _row_present(rows, statement.probe)
    catalog = Catalog(
        tables=tables,
        columns={name: ColumnInfo(nn, hd) for name, nn, hd in rows(_COLUMNS, (schema,))},
        indexes=dict(rows(_INDEXES, (schema,))),
        extensions=frozenset(row[0] for row in rows(_EXTENSIONS, ())),
        functions=frozenset(row[0] for row in rows(_FUNCTIONS, (schema,))),
        rows=seeds,
    )
    return State(
        database=database,
        version_table="schema_version" in tables,
        version=version,
        other_databases=tuple(sorted(others)),
        catalog=catalog,
        access=access,
    )


# -- sizes, for the impact report ------------------------------------------------------------------

# pg_total_relation_size takes ACCESS SHARE on the table, its TOAST table and each index: it is not called for a
# table on which another session holds or awaits ACCESS EXCLUSIVE (it would queue behind it); that session is
# named instead (a granted lock before a waiting one).
_SIZE_TABLES = """
SELECT c.relname, c.reltuples::bigint, CASE WHEN h.pid IS NULL THEN pg_total_relation_size(c.oid) END,
       h.pid, h.application_name
  FROM pg_class c
  LEFT JOIN LATERAL (
       SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND (l.relation = c.oid OR l.relation = c.reltoastrelid
               OR l.relation IN (SELECT x.indexrelid FROM pg_index x WHERE x.indrelid = c.oid))
        ORDER BY l.granted DESC, l.pid LIMIT 1) h ON true
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
"""
_INDEX_TABLES = """
SELECT i.relname, t.relname
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
 WHERE i.relnamespace = current_schema()::regnamespace
"""
_COLUMN_TYPES = """
SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
   AND NOT a.attisdropped
"""


SIZE_ATTEMPTS = 3


def _holder(pid: int | None, application: str | None) -> str | None:
    return None if pid is None else f"pid {pid} ({application or 'no application_name'})"


def read_sizes(rows: Rows) -> Sizes:
    """Three catalog queries in autocommit (no snapshot kept); only run when versions are pending.

    A table locked by another session has an unknown size (see ``_SIZE_TABLES``). A lock taken between that check
    and the measurement ends the query after the session's ``lock_timeout`` (55P03); it is asked again, and
    the new lock is then seen."""
    for attempt in range(SIZE_ATTEMPTS):
        try:
            found = rows(_SIZE_TABLES, ())
            break
        except LockWaitError:
            if attempt == SIZE_ATTEMPTS - 1:
                raise
    tables = {
        name: TableSize(count if count >= 0 else None, size, _holder(pid, application))
        for name, count, size, pid, application in found
    }
    return Sizes(tables, dict(rows(_INDEX_TABLES, ())), dict(rows(_COLUMN_TYPES, ())))
