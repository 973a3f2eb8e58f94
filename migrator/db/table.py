"""One table as the catalog describes it, for an online rewrite's shadow (`migrator.core.shadow.TableShape`), and
the rewrite's own traces (its state row, orphaned sessions of a killed run).

Read inside one transaction whose ``search_path`` is ``pg_catalog`` alone: ``format_type`` and ``pg_get_expr``
then qualify every name outside pg_catalog (``public.convert_ts(...)``), so the text means the same object from
any search_path the shadow is built under.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg import sql

from migrator.core.online import WORK_SCHEMA, OnlineProgress, Phase
from migrator.core.shadow import Column, Grant, Index, Publication, TableShape
from migrator.db.catalog import Rows
from migrator.db.session import TOOL_APPLICATION_NAME, tool_application_name
from migrator.errors import UnsafeStateError

_TABLE = """
SELECT c.oid, pg_get_userbyid(c.relowner), coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}'),
       c.relreplident::text, c.relacl IS NOT NULL, obj_description(c.oid, 'pg_class')
  FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s) AND c.relname = %s AND c.relkind = 'r'
"""
_GRANTEE = "CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(x.grantee) END"
_TABLE_ACL = f"""
SELECT {_GRANTEE}, x.privilege_type, x.is_grantable
  FROM pg_class c, aclexplode(c.relacl) WITH ORDINALITY AS x
 WHERE c.oid = %s ORDER BY x.ordinality
"""
_COLUMN_ACL = f"""
SELECT a.attnum, {_GRANTEE}, x.privilege_type, x.is_grantable
  FROM pg_attribute a, aclexplode(a.attacl) WITH ORDINALITY AS x
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum, x.ordinality
"""
_COLUMNS = """
SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attisdropped, a.attlen::int,
       a.attalign::text,
       CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(n.nspname) || '.' || quote_ident(co.collname) END,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END,
       a.attnotnull, NULLIF(a.attstorage, t.typstorage)::text, {compression},
       NULLIF(a.attstattarget::int, -1), coalesce(a.attoptions, '{{}}'), col_description(a.attrelid, a.attnum)
  FROM pg_attribute a
  LEFT JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_namespace n ON n.oid = co.collnamespace
 WHERE a.attrelid = %s AND a.attnum > 0 ORDER BY a.attnum
"""
_KEY = """
SELECT con.conname::text, pg_get_constraintdef(con.oid), obj_description(con.conindid, 'pg_class'),
       i.indisclustered, i.indisreplident,
       array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
              WHERE k.o <= i.indnkeyatts ORDER BY k.o),
       array(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
              WHERE k.o <= i.indnkeyatts ORDER BY k.o)
  FROM pg_constraint con JOIN pg_index i ON i.indexrelid = con.conindid
 WHERE con.conrelid = %s AND con.contype = 'p'
"""
# What a shadow would not carry (Temporal's tables have none of it): constraints but the key and, on 18, NOT
# NULL's; identity columns and owned sequences (the swap would move the sequence away with the old table).
_NOT_CARRIED = """
SELECT 'constraint ' || conname FROM pg_constraint WHERE conrelid = %s AND contype NOT IN ('p', 'n')
UNION ALL
SELECT 'identity column ' || attname FROM pg_attribute WHERE attrelid = %s AND attidentity <> ''
UNION ALL
SELECT 'owned sequence ' || s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s AND d.deptype IN ('a', 'i')
"""
_INDEXES = """
SELECT c.relname::text, pg_get_indexdef(i.indexrelid), obj_description(i.indexrelid, 'pg_class'), i.indisclustered,
       i.indisreplident
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = %s AND NOT i.indisprimary AND i.indisvalid ORDER BY i.indexrelid
"""
_PUBLICATIONS_15 = """
SELECT p.pubname::text, pg_get_expr(r.prqual, r.prrelid),
       array(SELECT a.attname::text FROM unnest(r.prattrs::int2[]) WITH ORDINALITY AS k(n, o)
               JOIN pg_attribute a ON a.attrelid = r.prrelid AND a.attnum = k.n ORDER BY k.o)
  FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = %s ORDER BY 1
"""
_PUBLICATIONS_13 = """
SELECT p.pubname::text, NULL::text, '{}'::text[]
  FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid WHERE r.prrelid = %s ORDER BY 1
"""
_STATE = sql.SQL(
    "SELECT table_name, versions, phase, store_schema, statements_digest, rows_copied, indexes_built FROM {}.state"
).format(sql.Identifier(WORK_SCHEMA))
_ORPHANS = """
SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND application_name LIKE %s AND application_name <> %s
"""
_STILL_THERE = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"


def read_shape(rows: Rows, schema: str, table: str, server_version: int) -> TableShape:
    """The table's description; raises UnsafeStateError for what a shadow cannot reproduce."""
    found = rows(_TABLE, (schema, table))
    if not found:
        raise UnsafeStateError(f"table {schema}.{table} does not exist; changed nothing")
    oid, owner, reloptions, toast_options, identity, has_acl, comment = found[0]
    other = [name for (name,) in rows(_NOT_CARRIED, (oid, oid, oid))]
    if other:
        raise UnsafeStateError(
            f"table {table} has what an online rewrite does not carry ({', '.join(other)}); "
            "use --rewrite-mode plain; changed nothing"
        )
    key = rows(_KEY, (oid,))
    if not key:
        raise UnsafeStateError(f"table {table} has no primary key; use --rewrite-mode plain; changed nothing")
    constraint, definition, key_comment, key_clustered, key_identity, key_names, key_types = key[0]
    column_grants: dict[int, list[Grant]] = {}
    for number, grantee, privilege, grantable in rows(_COLUMN_ACL, (oid,)):
        column_grants.setdefault(number, []).append(Grant(grantee, privilege, grantable))
    compression = "NULLIF(a.attcompression, '')::text" if server_version >= 140000 else "NULL::text"
    columns = tuple(
        _column(row, tuple(column_grants.get(row[0], ())))
        for row in rows(_COLUMNS.format(compression=compression), (oid,))
    )
    publications = rows(_PUBLICATIONS_15 if server_version >= 150000 else _PUBLICATIONS_13, (oid,))
    return TableShape(
        schema=schema,
        name=table,
        owner=owner,
        columns=columns,
        primary_key=tuple(key_names),
        key_types=tuple(key_types),
        primary_constraint=constraint,
        primary_definition=definition,
        primary_comment=key_comment,
        primary_clustered=key_clustered,
        primary_replica_identity=key_identity,
        reloptions=tuple(reloptions),
        toast_options=tuple(toast_options),
        replica_identity=identity,
        acl=tuple(Grant(*row) for row in rows(_TABLE_ACL, (oid,))) if has_acl else None,
        comment=comment,
        indexes=tuple(Index(*row) for row in rows(_INDEXES, (oid,))),
        publications=tuple(Publication(name, tuple(names), qual) for name, qual, names in publications),
    )


def _column(row: tuple[Any, ...], grants: tuple[Grant, ...]) -> Column:
    number, name, kind, dropped, length, align, collation, default, generated, not_null = row[:10]
    storage, compression, statistics, options, comment = row[10:]
    if dropped:
        return Column(number, name, kind, dropped=True, placeholder=(length, align))
    return Column(
        number,
        name,
        kind,
        collation=collation,
        default=default,
        generated=generated,
        not_null=not_null,
        storage=storage,
        compression=compression,
        statistics=statistics,
        options=tuple(options),
        grants=grants,
        comment=comment,
    )


def read_state(rows: Rows) -> tuple[OnlineProgress, str, str, int, int] | None:
    """(progress, the store's schema, the statements' digest, rows copied, index units built), or None when no
    rewrite is in progress (no work schema)."""
    present = rows("SELECT to_regclass(%s) IS NOT NULL", (f"{WORK_SCHEMA}.state",))
    if not present or not present[0][0]:
        return None
    found = rows(_STATE, ())
    if not found:
        return None
    table, versions, phase, schema, digest, copied, built = found[0]
    return OnlineProgress(table, tuple(versions), Phase(phase)), schema, digest, copied, built


def terminate_orphans(rows: Rows, own_pid: int, settle: float = 10.0) -> list[int]:
    """End the sessions a killed run left on the server (tagged by another lock session's pid: under our lock no
    other run is alive), and wait up to ``settle`` s for them to be gone with their locks."""
    ended = [
        pid for pid, done in rows(_ORPHANS, (f"{TOOL_APPLICATION_NAME}/%", tool_application_name(own_pid))) if done
    ]
    deadline = time.monotonic() + settle
    while ended and rows(_STILL_THERE, (ended,))[0][0] and time.monotonic() < deadline:
        time.sleep(0.1)
    return ended
