"""Live writes on a table, each with a witness row written in the same transaction, and the row-by-row check.

The witness (``witness.rows``: the primary key and the md5 of the row's text over the columns the table had when
it was seeded) commits exactly when the write does, so after any migration every committed write must be found:
the table and the witness agree row by row, or a change was lost (or invented). Writers update, delete and insert
(a copy of a row under a new key), each on its own share of the keys, so they never wait on each other.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

SCHEMA = "witness"
_INTEGERS = ("smallint", "integer", "bigint")


@dataclass(frozen=True)
class Witnessed:
    """The table, its key and the columns the witness hashes (fixed when seeded)."""

    table: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    counters: tuple[str, ...]  # non-key integer columns an update increments
    documents: tuple[str, ...]  # jsonb columns an update changes (generated columns follow them)

    def digest(self, alias: str = "t") -> sql.Composable:
        row = sql.SQL(", ").join(sql.Identifier(alias, name) for name in self.columns)
        return sql.SQL("md5(ROW({})::text)").format(row)

    def keys(self) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, self.key))


def seed(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> Witnessed:
    """Create the witness of ``table`` over its current non-generated columns and fill it from the table."""
    found = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnum = ANY(i.indkey) FROM pg_attribute a"
        " JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary WHERE a.attrelid = %s::regclass"
        " AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        (table,),
    ).fetchall()
    key_rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i, unnest(i.indkey::int2[])"
        " WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attnum = k.n WHERE i.indrelid = %s::regclass"
        " AND a.attrelid = i.indrelid AND i.indisprimary ORDER BY k.o",
        (table,),
    ).fetchall()
    witnessed = Witnessed(
        table,
        tuple(name for name, _ in key_rows),
        tuple(name for name, _, _ in found),
        tuple(name for name, kind, in_key in found if kind in _INTEGERS and not in_key),
        tuple(name for name, kind, _ in found if kind == "jsonb"),
    )
    key_columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in key_rows)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
    conn.execute(
        sql.SQL("CREATE TABLE {} ({}, digest text NOT NULL, PRIMARY KEY ({}))").format(
            sql.Identifier(SCHEMA, "rows"), key_columns, witnessed.keys()
        )
    )
    conn.execute(
        sql.SQL("INSERT INTO {} SELECT {}, {} FROM {} AS t").format(
            sql.Identifier(SCHEMA, "rows"), witnessed.keys(), witnessed.digest(), sql.Identifier(table)
        )
    )
    return witnessed


def differences(conn: psycopg.Connection[tuple[Any, ...]], witnessed: Witnessed) -> int:
    """Rows where the table and the witness disagree (missing on either side, or another digest)."""
    query = sql.SQL(
        "SELECT count(*) FROM (SELECT {keys}, {digest} AS digest FROM {table} AS t) AS a "
        "FULL JOIN {witness} AS w USING ({keys}) WHERE a.digest IS DISTINCT FROM w.digest"
    ).format(
        keys=witnessed.keys(),
        digest=witnessed.digest(),
        table=sql.Identifier(witnessed.table),
        witness=sql.Identifier(SCHEMA, "rows"),
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def drop(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(SCHEMA)))


@dataclass
class Writers:
    """``count`` threads writing to the table until `stop`; ``connect`` opens an autocommit connection."""

    witnessed: Witnessed
    connect: Any
    count: int = 2
    pause: float = 0.005
    commits: int = 0
    worst: float = 0.0  # seconds, the longest write transaction (a stall shows here)
    worst_at: float = 0.0  # when it started (time.time())
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self.connect() as conn:
            query = sql.SQL("SELECT {} FROM {}").format(self.witnessed.keys(), sql.Identifier(self.witnessed.table))
            keys = conn.execute(query).fetchall()
        for number in range(self.count):
            mine = [tuple(key) for key in keys[number :: self.count]]
            thread = threading.Thread(target=self._write, args=(number, mine), daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> int:
        """Stop the writers; returns the number of writes committed."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.commits

    def _write(self, number: int, keys: list[tuple[Any, ...]]) -> None:
        w = self.witnessed
        table, witness = sql.Identifier(w.table), sql.Identifier(SCHEMA, "rows")
        match = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in w.key)
        sets = [sql.SQL("{0} = {0} + 1").format(sql.Identifier(name)) for name in w.counters]
        document = sql.SQL("{0} = {0} || jsonb_build_object('TemporalInt01', %s::bigint)")
        sets += [document.format(sql.Identifier(name)) for name in w.documents]
        update = sql.SQL("UPDATE {} SET {} WHERE {}").format(table, sql.SQL(", ").join(sets), match)
        delete = sql.SQL("DELETE FROM {} WHERE {}").format(table, match)
        others = [sql.Identifier(name) for name in w.columns if name != w.key[-1]]
        insert = sql.SQL(
            "INSERT INTO {t} ({cols}, {last}) SELECT {cols}, md5(random()::text) FROM {t} WHERE {m} RETURNING {keys}"
        ).format(t=table, cols=sql.SQL(", ").join(others), last=sql.Identifier(w.key[-1]), m=match, keys=w.keys())
        upsert = sql.SQL(
            "INSERT INTO {w} SELECT {keys}, {digest} FROM {t} AS t WHERE {m} "
            "ON CONFLICT ({keys}) DO UPDATE SET digest = excluded.digest"
        ).format(w=witness, keys=w.keys(), digest=w.digest(), t=table, m=match)
        forget = sql.SQL("DELETE FROM {} WHERE {}").format(witness, match)
        chance = random.Random(number)
        try:
            conn = self.connect()
        except psycopg.Error as error:
            self.errors.append(str(error))
            return
        with conn:
            while not self._stop.is_set() and keys:
                key = chance.choice(keys)
                roll = chance.random()
                started = time.monotonic()
                try:
                    with conn.transaction():
                        if roll < 0.6:
                            conn.execute(update, (*([chance.randrange(10**6)] * len(w.documents)), *key))
                            conn.execute(upsert, key)
                        elif roll < 0.8:
                            conn.execute(delete, key)
                            conn.execute(forget, key)
                            keys.remove(key)
                        else:
                            row = conn.execute(insert, key).fetchone()
                            assert row is not None
                            conn.execute(upsert, row)
                            keys.append(tuple(row))
                except psycopg.Error as error:  # a write that failed committed nothing, witness included
                    self.errors.append(f"{type(error).__name__}: {error}")
                    continue
                with self._lock:
                    self.commits += 1
                    if time.monotonic() - started > self.worst:
                        self.worst, self.worst_at = (
                            time.monotonic() - started,
                            time.time() - (time.monotonic() - started),
                        )
                self._stop.wait(self.pause)
