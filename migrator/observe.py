"""Read a store's state through psycopg: catalog, version row, privileges. Read-only, autocommit.

Each query runs in its own autocommit statement, so no transaction (and no snapshot) stays open on our
connection: the vendor's ``CREATE INDEX CONCURRENTLY`` would otherwise wait for us.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from migrator.state import Access, Catalog, ColumnInfo, State
from migrator.statements import Kind, RowProbe
from migrator.vendor import VendorSchema

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

Connection = psycopg.Connection[tuple[Any, ...]]


def _row_present(conn: Connection, probe: RowProbe) -> bool:
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ({}) IN (VALUES {}))").format(
        sql.Identifier(probe.table),
        sql.SQL(", ").join(sql.Identifier(column) for column in probe.columns),
        sql.SQL(probe.values_sql),
    )
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def observe(conn: Connection, database: str, vendor: VendorSchema) -> State:
    """Observe the store; ``database`` is the ``db_name`` key of ``schema_version`` (the tool's --db)."""
    access_row = conn.execute(_ACCESS).fetchone()
    assert access_row is not None, "current_database() is always in pg_database"
    access = Access(*access_row)
    schema = access.schema
    tables = frozenset(row[0] for row in conn.execute(_TABLES, (schema,)))
    version: str | None = None
    others: list[str] = []
    if "schema_version" in tables:
        for db_name, curr_version in conn.execute(_VERSION_ROWS):
            if db_name == database:
                version = curr_version
            else:
                others.append(db_name)
    rows: dict[str, bool] = {}
    for pending in vendor.after(version):  # only a pending version's seed rows can matter to the plan
        for statement in pending.statements:
            for effect in statement.effects:
                if effect.ref.kind is Kind.ROW and statement.probe is not None:
                    rows[effect.ref.name] = statement.probe.table in tables and _row_present(conn, statement.probe)
    catalog = Catalog(
        tables=tables,
        columns={name: ColumnInfo(nn, hd) for name, nn, hd in conn.execute(_COLUMNS, (schema,))},
        indexes=dict(conn.execute(_INDEXES, (schema,))),
        extensions=frozenset(row[0] for row in conn.execute(_EXTENSIONS)),
        functions=frozenset(row[0] for row in conn.execute(_FUNCTIONS, (schema,))),
        rows=rows,
    )
    return State(
        database=database,
        version_table="schema_version" in tables,
        version=version,
        other_databases=tuple(sorted(others)),
        catalog=catalog,
        access=access,
    )
