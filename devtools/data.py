"""Rows in Temporal's tables, made fast and generically: ``INSERT … SELECT`` over ``generate_series``.

Each column gets an expression of the row number ``g`` chosen by its type, so any release's tables can be
filled without naming their columns, and every row is distinct in every text/number column (primary keys
hold). ``snapshot`` takes what must survive an upgrade: the row count and a sample of rows, each as the
text of the columns that existed before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, a.atttypmod
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
   AND a.attidentity = ''
 ORDER BY a.attnum
"""
_KEY = """
SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
 WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)
"""
# A search-attributes-like document, so generated columns computed from it hold values.
_DOCUMENT = "jsonb_build_object('TemporalBool01', g % 2 = 0, 'TemporalInt01', g, 'BuildIds', jsonb_build_array(g))"
_NUMBER = {"int2": "(g % 30000)", "int4": "g", "int8": "g::bigint", "numeric": "g::numeric", "float8": "g::float8"}


def _expression(typname: str, typmod: int) -> sql.Composable:
    """``g`` rendered as a value of the column's type."""
    if typname in _NUMBER:
        return sql.SQL(_NUMBER[typname])
    if typname in ("varchar", "bpchar", "text"):
        width = typmod - 4 if typmod > 4 else 64
        return sql.SQL("left(g::text || '-' || md5(g::text), {})").format(sql.Literal(width))
    if typname == "bytea":
        return sql.SQL("decode(md5(g::text), 'hex')")
    if typname in ("timestamp", "timestamptz"):
        return sql.SQL("timestamp '2026-01-01' + g * interval '1 second'")
    if typname in ("json", "jsonb"):
        return sql.SQL(_DOCUMENT)
    if typname == "bool":
        return sql.SQL("g % 2 = 0")
    if typname == "uuid":
        return sql.SQL("md5(g::text)::uuid")
    raise ValueError(f"no generator for type {typname}; add one to devtools/data.py")


def fill(conn: psycopg.Connection[tuple[Any, ...]], table: str, rows: int) -> None:
    """Insert ``rows`` rows into ``table`` (one statement) and ANALYZE it, so reltuples is exact."""
    columns = conn.execute(_COLUMNS, (table,)).fetchall()
    names = sql.SQL(", ").join(sql.Identifier(name) for name, *_ in columns)
    values = sql.SQL(", ").join(_expression(typname, typmod) for _, _, typname, typmod in columns)
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {}) AS g").format(
            sql.Identifier(table), names, values, sql.Literal(rows)
        )
    )
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


@dataclass(frozen=True)
class Snapshot:
    """Row count and sampled rows (by primary key) of one table, over the columns it had when taken."""

    count: int
    sample: tuple[tuple[Any, ...], ...]


def snapshot(conn: psycopg.Connection[tuple[Any, ...]], table: str, columns: list[str] | None = None) -> Snapshot:
    """Every 997th row by primary key, plus first and last, as text (cheap on 100k rows, and order-stable)."""
    if columns is None:
        columns = [name for name, *_ in conn.execute(_COLUMNS, (table,))]
    key = primary_key(conn, table) or columns
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    query = sql.SQL(
        "SELECT {cols} FROM (SELECT {cols}, row_number() OVER (ORDER BY {key}) AS n, count(*) OVER () AS total "
        "FROM {table}) s WHERE n % 997 = 1 OR n = total ORDER BY n"
    ).format(
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(name)) for name in columns),
        key=sql.SQL(", ").join(sql.Identifier(name) for name in key),
        table=sql.Identifier(table),
    )
    return Snapshot(int(row[0]), tuple(conn.execute(query).fetchall()))


def primary_key(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> list[str]:
    return [name for (name,) in conn.execute(_KEY, (table,))]


def columns_of(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> list[str]:
    return [name for name, *_ in conn.execute(_COLUMNS, (table,))]
