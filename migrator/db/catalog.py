"""Read a store's state: catalog, definitions, version row, privileges. Read-only.

`observe` reads everything in ONE statement (one round trip, one statement snapshot): a reader that ran its
queries one by one could see, say, an index another session's tool created without the table it created just
before. It runs in autocommit through `migrator.db.driver` (``rows``), so no transaction (and no snapshot) stays
open on our connection: the vendor's ``CREATE INDEX CONCURRENTLY`` would otherwise wait for us. Everything is read
in ``current_schema()``, so ``search_path`` in --connect-attributes moves the whole run to that schema, as it
moves the tool. Definitions come back as the catalog prints them; the core normalises them only when it
compares them. Seed rows (the vendor's INSERTs) are probed in a second statement, only when pending versions
hold one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from psycopg import sql

from migrator.core.online import WORK_SCHEMA, OnlineProgress, Phase, TableFacts
from migrator.core.sizes import Sizes, TableSize
from migrator.core.state import Access, Catalog, ColumnInfo, IndexInfo, State
from migrator.core.statements import Kind, RowProbe
from migrator.core.vendor import VendorSchema
from migrator.errors import LockWaitError

# pg_get_expr and pg_get_indexdef take ACCESS SHARE on the table: they are not called for a table on which another
# session holds or awaits ACCESS EXCLUSIVE (a rewrite, VACUUM FULL, an operator's LOCK), whose definitions are then
# unknown and its holder named (``locked``), so reading the catalog never queues behind such a lock.
# schema_version may not exist yet: its rows are read through query_to_xml, which plans the query only when the
# CASE reaches it (a plain reference to a missing table would fail the whole statement). The state row of an
# online rewrite in progress is read the same way, guarded by to_regclass (NULL, not an error, when its schema
# does not exist): no rewrite in progress costs nothing.
_OBSERVE_TEMPLATE = """
WITH s AS (SELECT coalesce(current_schema(), 'public') AS name,
                  (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AS oid),
tables AS (SELECT c.oid, c.relname, c.reltoastrelid FROM pg_class c, s
            WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p')),
exclusive AS (SELECT l.relation, l.pid, l.granted FROM pg_locks l
               WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())),
held AS (SELECT t.oid, t.relname, h.pid, a.application_name
           FROM tables t
           JOIN LATERAL (SELECT e.pid FROM exclusive e
                          WHERE e.relation = t.oid OR e.relation = t.reltoastrelid
                             OR e.relation IN (SELECT x.indexrelid FROM pg_index x WHERE x.indrelid = t.oid)
                          ORDER BY e.granted DESC, e.pid LIMIT 1) h ON true
           LEFT JOIN pg_stat_activity a ON a.pid = h.pid)
SELECT json_build_object(
  'access', (SELECT json_build_array(current_user, pg_get_userbyid(d.datdba), s.name,
                                     current_setting('server_version_num')::int,
                                     coalesce(has_schema_privilege(s.name, 'CREATE'), false),
                                     has_database_privilege(current_database(), 'CREATE'),
                                     pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on')
               FROM pg_database d, s WHERE d.datname = current_database()),
  'tables', (SELECT coalesce(json_agg(relname), '[]') FROM tables),
  'columns', @COLUMNS@,
  'indexes', (SELECT coalesce(json_agg(json_build_array(c.relname, i.indisvalid,
                                                         @INDEXDEF@)), '[]')
                FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid, s WHERE c.relnamespace = s.oid),
  'locked', (SELECT coalesce(json_agg(json_build_array(relname, pid, application_name)), '[]') FROM held),
  'functions', @FUNCTIONS@,
  'extensions', (SELECT coalesce(json_agg(extname), '[]') FROM pg_extension),
  'versions', (SELECT CASE WHEN EXISTS (SELECT 1 FROM tables WHERE relname = 'schema_version') THEN
                 (SELECT coalesce(json_agg(json_build_array(x.db_name, x.curr_version)), '[]')
                    FROM XMLTABLE('/table/row' PASSING query_to_xml(
                           format('SELECT db_name, curr_version FROM %%I.schema_version WHERE version_partition = 0',
                                  s.name), true, false, '')
                         COLUMNS db_name text PATH 'db_name', curr_version text PATH 'curr_version') AS x)
               END FROM s),
  'online', (SELECT CASE WHEN to_regclass('@WORK@.state') IS NOT NULL THEN
               (SELECT json_agg(json_build_array(x.table_name, x.versions, x.phase))
                  FROM XMLTABLE('/table/row' PASSING query_to_xml(
                         'SELECT table_name, array_to_json(versions) AS versions, phase FROM @WORK@.state',
                         true, false, '')
                       COLUMNS table_name text PATH 'table_name', versions text PATH 'versions',
                               phase text PATH 'phase') AS x)
             END)
)
""".replace("@WORK@", WORK_SCHEMA)
# The definitions: a column's type, nullability and default, an index's definition, a function's body. Only a plan
# with pending versions compares them (and verification after a run); a no-op reads presence only, which on a
# backend's first statement costs about half of the full read (its catalog caches are cold).
_DEFINITIONS = {
    "@COLUMNS@": """(SELECT coalesce(json_agg(json_build_array(t.relname || '.' || a.attname,
                                                         format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                                         CASE WHEN t.oid NOT IN (SELECT oid FROM held)
                                                              THEN pg_get_expr(d.adbin, d.adrelid) END,
                                                         a.attgenerated <> '')), '[]')
                FROM tables t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum)""",
    "@INDEXDEF@": """CASE WHEN i.indrelid NOT IN (SELECT oid FROM held)
                                                              THEN pg_get_indexdef(i.indexrelid) END""",
    "@FUNCTIONS@": """(SELECT coalesce(json_agg(json_build_array(p.proname, md5(p.prosrc))), '[]')
                  FROM pg_proc p, s WHERE p.pronamespace = s.oid)""",
}
_PRESENCE = {"@COLUMNS@": "'[]'::json", "@INDEXDEF@": "NULL", "@FUNCTIONS@": "'[]'::json"}


def _statement(parts: dict[str, str]) -> str:
    text = _OBSERVE_TEMPLATE
    for marker, part in parts.items():
        text = text.replace(marker, part)
    return text


_OBSERVE = _statement(_DEFINITIONS)
_OBSERVE_PRESENCE = _statement(_PRESENCE)

Rows = Callable[[sql.Composable | str, Sequence[Any]], list[tuple[Any, ...]]]


def _rows_present(rows: Rows, probes: dict[str, RowProbe]) -> dict[str, bool]:
    """One statement for every seed row: ``(columns) IN (VALUES values)`` per probe."""
    if not probes:
        return {}
    query = sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("EXISTS (SELECT 1 FROM {} WHERE ({}) IN (VALUES {}))").format(
                sql.Identifier(probe.table),
                sql.SQL(", ").join(sql.Identifier(column) for column in probe.columns),
                sql.SQL(probe.values_sql),  # the vendor's own literal, as its INSERT wrote it
            )
            for probe in probes.values()
        )
    )
    found = rows(query, ())
    return {name: bool(value) for name, value in zip(probes, found[0], strict=True)}


STORED = "stored"


def observe(
    rows: Rows, database: str, vendor: VendorSchema, *, seeds_after: str | None = STORED, definitions: bool = True
) -> State:
    """Observe the store; ``database`` is the ``db_name`` key of ``schema_version`` (the tool's --db).

    Seed rows are probed for the versions after ``seeds_after``: by default the stored version (only pending
    versions matter to a plan); verification passes the version a run started from (the rows it added; older
    ones the server may since have updated). Without ``definitions`` only what exists is read (a store at its
    target plans from that alone).
    """
    found = rows(_OBSERVE if definitions else _OBSERVE_PRESENCE, ())
    assert found, "the statement always returns one row"
    document: dict[str, Any] = found[0][0]
    assert document["access"], "current_database() is always in pg_database"
    access = Access(*document["access"])
    tables = frozenset(document["tables"])
    version: str | None = None
    others: list[str] = []
    for db_name, curr_version in document["versions"] or ():
        if db_name == database:
            version = curr_version
        else:
            others.append(db_name)
    probes: dict[str, RowProbe] = {}
    for pending in vendor.after(version if seeds_after == STORED else seeds_after):
        for statement in pending.read_statements or ():  # unread: the shell reads them, then observes again
            for effect in statement.effects:
                if effect.ref.kind is Kind.ROW and statement.probe is not None:
                    probes[effect.ref.name] = statement.probe
    seeds = {name: False for name, probe in probes.items() if probe.table not in tables}
    seeds.update(_rows_present(rows, {name: probe for name, probe in probes.items() if probe.table in tables}))
    functions: dict[str, set[str]] = {}
    for name, body in document["functions"]:
        functions.setdefault(name, set()).add(body)
    columns = {name: ColumnInfo(*rest) for name, *rest in document["columns"]}
    locked = {table: holder(pid, application) for table, pid, application in document.get("locked", ())}
    catalog = Catalog(
        tables=tables,
        columns=columns,
        indexes={
            name: IndexInfo(valid, definition or "", known=definition is not None)
            for name, valid, definition in document["indexes"]
        },
        locked=locked,
        extensions=frozenset(document["extensions"]),
        functions={name: frozenset(bodies) for name, bodies in functions.items()},
        rows=seeds,
        definitions=definitions,
    )
    return State(
        database=database,
        version=version,
        other_databases=tuple(sorted(others)),
        catalog=catalog,
        access=access,
        online=_online(document.get("online")),
    )


def _online(rows: list[list[str]] | None) -> OnlineProgress | None:
    """The state row of an online rewrite in progress (its versions as JSON text, as query_to_xml carries them)."""
    if not rows:
        return None
    table, versions, phase = rows[0]
    return OnlineProgress(table, tuple(json.loads(versions or "[]")), Phase(phase))


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


def holder(pid: int, application: str | None) -> str:
    """How a lock's holder is named in messages: ``pid 4242 (analytics)``."""
    return f"pid {pid} ({application or 'no application_name'})"


def _holder(pid: int | None, application: str | None) -> str | None:
    return None if pid is None else holder(pid, application)


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


# -- what the online rewrite's preflight judges -----------------------------------------------------

# Whatever refers to a table by its OID, which the swap would leave pointing at the retired table (views, rules,
# foreign keys either way, policies, inheritance, triggers, extended statistics), plus what the engine does not
# rebuild (check and exclusion constraints, identity columns). Triggers whose function lives in the online
# rewrite's work schema are its own change capture, not dependents.
_TABLE_FACTS = """
SELECT t.relname,
  (SELECT coalesce(json_agg(a.attname ORDER BY k.ord), '[]')
     FROM pg_constraint c CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
    WHERE c.conrelid = t.oid AND c.contype = 'p'),
  (SELECT coalesce(json_agg(d.what ORDER BY d.what), '[]') FROM (
     SELECT DISTINCT CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END || v.oid::regclass::text AS what
       FROM pg_depend x JOIN pg_rewrite r ON r.oid = x.objid JOIN pg_class v ON v.oid = r.ev_class
      WHERE x.classid = 'pg_rewrite'::regclass AND x.refclassid = 'pg_class'::regclass AND x.refobjid = t.oid
        AND r.ev_class <> t.oid
     UNION ALL SELECT 'rule ' || r.rulename FROM pg_rewrite r WHERE r.ev_class = t.oid
     UNION ALL SELECT 'foreign key ' || c.conname || ' of ' || c.conrelid::regclass::text
                 FROM pg_constraint c WHERE c.contype = 'f' AND (c.conrelid = t.oid OR c.confrelid = t.oid)
     UNION ALL SELECT CASE c.contype WHEN 'c' THEN 'check constraint ' ELSE 'exclusion constraint ' END || c.conname
                 FROM pg_constraint c WHERE c.conrelid = t.oid AND c.contype IN ('c', 'x')
     UNION ALL SELECT 'policy ' || p.polname FROM pg_policy p WHERE p.polrelid = t.oid
     UNION ALL SELECT 'inheritance child ' || i.inhrelid::regclass::text FROM pg_inherits i WHERE i.inhparent = t.oid
     UNION ALL SELECT 'inheritance parent ' || i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = t.oid
     UNION ALL SELECT 'partitioning' WHERE t.relkind = 'p'
     UNION ALL SELECT 'trigger ' || g.tgname FROM pg_trigger g JOIN pg_proc f ON f.oid = g.tgfoid
                WHERE g.tgrelid = t.oid AND NOT g.tgisinternal
                  AND f.pronamespace IS DISTINCT FROM to_regnamespace('@WORK@')::oid
     UNION ALL SELECT 'extended statistics ' || e.stxname FROM pg_statistic_ext e WHERE e.stxrelid = t.oid
     UNION ALL SELECT 'identity column ' || a.attname FROM pg_attribute a
                WHERE a.attrelid = t.oid AND a.attidentity <> '' AND NOT a.attisdropped
  ) d),
  (SELECT coalesce(json_agg(p.pubname ORDER BY p.pubname), '[]') FROM pg_publication p WHERE p.puballtables)
  FROM pg_class t
 WHERE t.relnamespace = current_schema()::regnamespace AND t.relkind IN ('r', 'p') AND t.relname = ANY(%s)
""".replace("@WORK@", WORK_SCHEMA)


def read_table_facts(rows: Rows, tables: Collection[str], sizes: Sizes) -> dict[str, TableFacts]:
    """The preflight's facts about ``tables``, in one catalog query; read only when pending statements rewrite or
    scan them (never on a no-op). Their total size is the one ``sizes`` read (measuring it again would lock)."""
    if not tables:
        return {}
    found = rows(_TABLE_FACTS, (sorted(tables),))
    return {
        name: TableFacts(
            name,
            (sizes.tables[name].bytes if name in sizes.tables else None) or 0,
            tuple(key),
            tuple(dependents),
            tuple(publications),
        )
        for name, key, dependents, publications in found
    }
