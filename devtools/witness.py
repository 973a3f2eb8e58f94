"""A Temporal-like live load on a visibility store, with a transactional witness that catches silent loss.

Writers run Temporal's own statements (``sqlplugin/postgresql/visibility.go``): ``INSERT … ON CONFLICT DO
NOTHING``, the ``_version``-guarded upsert and ``DELETE`` by primary key; readers run get-by-key and the list
query (``ORDER BY COALESCE(close_time, …) DESC, start_time DESC, run_id``). Every statement is server-side
prepared on first use (``prepare_threshold = 0``), as pgx's statement cache does, so a swap that broke cached
plans shows up as errors.

Each write commits together with a row of ``bench.witness``: the key and the md5 of the row as the table holds
it after the write (or no row when it is gone), read back in the same transaction. Whatever the table holds at
the end must equal the witness row for row (`compare`): a change a rewrite dropped, or a row it resurrected,
is a differing key. The witness schema is outside ``current_schema()``, where the migrator never looks.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from devtools.data import columns_of, primary_key

WITNESS_SCHEMA = "bench"
WITNESS_TABLE = "witness"
TABLE = "executions_visibility"
# sqlplugin.DbFields: the columns Temporal writes and reads, in its order (_version last, by its design).
DB_FIELDS = (
    "namespace_id",
    "run_id",
    "workflow_type_name",
    "workflow_id",
    "start_time",
    "execution_time",
    "status",
    "close_time",
    "history_length",
    "history_size_bytes",
    "execution_duration",
    "state_transition_count",
    "memo",
    "encoding",
    "task_queue",
    "search_attributes",
    "parent_workflow_id",
    "parent_run_id",
    "root_workflow_id",
    "root_run_id",
    "_version",
)
KEY = ("namespace_id", "run_id")
NAMESPACES = 4  # the load's own namespaces (list queries read them)
PAGE_SIZE = 10
SLOW = 1.0  # a query longer than this is a stall
# --max-stall's default (README): a live query must never wait this long for a lock. Tests give it to the load's
# sessions as lock_timeout, so the server itself reports such a wait (SQLSTATE 55P03, kept as an error): a query
# slowed by a loaded machine (CPU, a checkpoint) is not a lock wait, and only the benchmarks judge it.
LOCK_WAIT_GOAL = 1.0
Sample = tuple[float, float]  # (monotonic start, seconds)
Connect = Callable[[], psycopg.Connection[tuple[Any, ...]]]


# -- Temporal's statements ------------------------------------------------------------------------------


def _fields(fields: Sequence[str] = DB_FIELDS) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, fields))


def _placeholders(count: int) -> sql.Composable:
    return sql.SQL(", ").join([sql.Placeholder()] * count)


def _where_key() -> sql.Composable:
    return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in KEY)


def insert_statement() -> sql.Composed:
    """``templateInsertWorkflowExecution``: a new row, or nothing when the key exists."""
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING").format(
        sql.Identifier(TABLE), _fields(), _placeholders(len(DB_FIELDS)), _fields(KEY)
    )


def upsert_statement() -> sql.Composed:
    """``templateUpsertWorkflowExecution``: every field replaced, unless the stored ``_version`` is not older."""
    assignments = sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name)) for name in DB_FIELDS)
    return sql.SQL(
        "INSERT INTO {table} ({fields}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {assignments}"
        " WHERE {table}.{version} < EXCLUDED.{version}"
    ).format(
        table=sql.Identifier(TABLE),
        fields=_fields(),
        values=_placeholders(len(DB_FIELDS)),
        key=_fields(KEY),
        assignments=assignments,
        version=sql.Identifier("_version"),
    )


def delete_statement() -> sql.Composed:
    """``templateDeleteWorkflowExecution_v12``."""
    return sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(TABLE), _where_key())


def get_statement() -> sql.Composed:
    """``templateGetWorkflowExecution_v12``."""
    return sql.SQL("SELECT {} FROM {} WHERE {}").format(_fields(), sql.Identifier(TABLE), _where_key())


def list_statement() -> sql.Composed:
    """The query converter's list query for one namespace (its ``default_idx`` order)."""
    return sql.SQL(
        "SELECT {} FROM {} WHERE namespace_id = %s"
        " ORDER BY COALESCE(close_time, '9999-12-31 23:59:59') DESC, start_time DESC, run_id LIMIT %s"
    ).format(_fields(), sql.Identifier(TABLE))


def row_hash(columns: Sequence[str]) -> sql.Composed:
    """md5 of a row's text over ``columns`` (the written ones: generated columns are checked by expression)."""
    return sql.SQL("md5(ROW({})::text)").format(_fields(columns))


def witness_name() -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(WITNESS_SCHEMA), sql.Identifier(WITNESS_TABLE))


def record_statement(columns: Sequence[str]) -> sql.Composed:
    """In the write's transaction: the witness row of one key becomes what the table now holds, or goes."""
    return sql.SQL(
        "WITH now_row AS (SELECT {key}, {hash} AS row_md5 FROM {table} WHERE {where}),"
        " kept AS (INSERT INTO {witness} SELECT * FROM now_row"
        " ON CONFLICT ({key}) DO UPDATE SET row_md5 = excluded.row_md5)"
        " DELETE FROM {witness} w WHERE {where_w} AND NOT EXISTS (SELECT 1 FROM now_row)"
    ).format(
        key=_fields(KEY),
        hash=row_hash(columns),
        table=sql.Identifier(TABLE),
        where=_where_key(),
        witness=witness_name(),
        where_w=sql.SQL(" AND ").join(sql.SQL("w.{} = %s").format(sql.Identifier(name)) for name in KEY),
    )


# -- rows ------------------------------------------------------------------------------------------------


def search_attributes(n: int) -> dict[str, Any]:
    """A document holding a value for Temporal's predefined and custom keys, so every generated column of the
    1.9-1.14 tables (and those the upgrade adds) has a value to compute."""
    stamp = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document: dict[str, Any] = {
        "TemporalChangeVersion": [f"change-{n % 7}"],
        "BinaryChecksums": [f"checksum-{n % 5}"],
        "BatcherUser": f"user-{n % 3}",
        "TemporalScheduledStartTime": stamp,
        "TemporalScheduledById": f"schedule-{n % 11}",
        "TemporalSchedulePaused": n % 2 == 0,
        "TemporalNamespaceDivision": f"division-{n % 2}",
        "BuildIds": [f"build-{n % 13}"],
        "TemporalPauseInfo": [f"pause-{n % 3}"],
        "TemporalReportedProblems": [f"problem-{n % 4}"],
        "TemporalWorkerDeploymentVersion": f"deployment.{n % 6}",
        "TemporalWorkflowVersioningBehavior": "Pinned" if n % 2 else "AutoUpgrade",
        "TemporalWorkerDeployment": f"deployment-{n % 6}",
        "TemporalUsedWorkerDeploymentVersions": [f"deployment.{n % 6}"],
        "TemporalExternalPayloadSizeBytes": n * 10,
        "TemporalExternalPayloadCount": n % 9,
    }
    for i in (1, 2, 3):
        document |= {
            f"Bool0{i}": (n + i) % 2 == 0,
            f"Datetime0{i}": stamp,
            f"Double0{i}": n / (i + 1),
            f"Int0{i}": n * i,
            f"Text0{i}": f"text {n} word{i}",
            f"KeywordList0{i}": [f"k{n % 5}", f"k{i}"],
        }
    document |= {f"Keyword{i:02}": f"keyword-{n % (i + 2)}" for i in range(1, 11)}
    document |= {f"TemporalBool0{i}": n % (i + 1) == 0 for i in (1, 2)}
    document |= {f"TemporalDatetime0{i}": stamp for i in (1, 2)}
    document |= {f"TemporalDouble0{i}": n / (i + 3) for i in (1, 2)}
    document |= {f"TemporalInt0{i}": n + i for i in (1, 2)}
    document |= {f"TemporalKeyword0{i}": f"tk-{n % (i + 3)}" for i in (1, 2, 3, 4)}
    document |= {f"TemporalKeywordList0{i}": [f"tkl-{n % 3}"] for i in (1, 2)}
    document["TemporalLowCardinalityKeyword01"] = f"low-{n % 2}"
    return document


def visibility_row(namespace: str, run_id: str, version: int, n: int) -> tuple[Any, ...]:
    """The values of one execution in ``DB_FIELDS`` order, like Temporal's ``prepareRowForDB`` makes them."""
    start = datetime(2026, 1, 1) + timedelta(seconds=n)
    closed = n % 3 != 0
    return (
        namespace,
        run_id,
        f"witness-workflow-type-{n % 5}",
        f"witness-workflow-{run_id[:8]}",
        start,
        start,
        2 if closed else 1,
        start + timedelta(seconds=30) if closed else None,
        n % 100 if closed else None,
        n * 7 if closed else None,
        30_000_000_000 if closed else None,
        n % 50 if closed else None,
        f"memo {n}".encode(),
        "Proto3",
        f"witness-queue-{n % 3}",
        Jsonb(search_attributes(n)),
        None,
        None,
        f"witness-workflow-{run_id[:8]}",
        run_id,
        version,
    )


# -- latencies -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What a window of the load's samples says: how many queries, the worst, p99, the stalls, the rate."""

    queries: int
    worst_s: float | None
    p99_s: float | None
    over_1s: int
    per_second: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "worst_s": self.worst_s,
            "p99_s": self.p99_s,
            "over_1s": self.over_1s,
            "per_second": self.per_second,
        }


def figures(samples: Sequence[Sample], start: float, end: float) -> Figures:
    """The queries that started in ``[start, end]`` (a query stalled by a lock started before it ended)."""
    latencies = sorted(seconds for started, seconds in samples if start <= started <= end)
    span = end - start
    return Figures(
        queries=len(latencies),
        worst_s=round(latencies[-1], 3) if latencies else None,
        p99_s=round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
        over_1s=sum(1 for seconds in latencies if seconds > SLOW),
        per_second=round(len(latencies) / span, 1) if span > 0 else 0.0,
    )


def relative(samples: Sequence[Sample], origin: float, start: float, end: float) -> list[list[float]]:
    """``[[t since origin, seconds], …]`` of the samples started in ``[start, end]`` (what a plot reads)."""
    return [[round(started - origin, 3), round(seconds, 4)] for started, seconds in samples if start <= started <= end]


# -- the load ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    """Writer and reader threads on a visibility table, each on its own connection from ``connect``.

    ``prepare`` creates the witness from the table's current rows; ``start``/``stop`` run the threads. Samples are
    ``(monotonic start, seconds)`` of every statement; errors are kept as their messages (a rewrite must cause
    none). ``lock_wait``: the sessions' lock_timeout in seconds (None: the server's), so a longer wait for a lock
    is an error."""

    connect: Connect
    writers: int = 2
    readers: int = 2
    pause: float = 0.01
    lock_wait: float | None = None
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    writes: int = 0  # committed write transactions
    columns: tuple[str, ...] = ()
    _keys: list[tuple[str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def prepare(self, sample_keys: int = 2000) -> None:
        """The witness as the table is now (a row hash per key) and a pool of existing keys to update or delete."""
        with self.connect() as conn:
            missing = set(DB_FIELDS) - set(columns_of(conn, TABLE))
            if missing or tuple(primary_key(conn, TABLE)) != KEY:
                raise ValueError(f"{TABLE} is not a visibility table of 1.9 or newer (missing {sorted(missing)})")
            self.columns = tuple(columns_of(conn, TABLE))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(WITNESS_SCHEMA)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(witness_name()))
            conn.execute(
                sql.SQL("CREATE TABLE {} AS SELECT {}, {} AS row_md5 FROM {}").format(
                    witness_name(), _fields(KEY), row_hash(self.columns), sql.Identifier(TABLE)
                )
            )
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(witness_name(), _fields(KEY)))
            rows = conn.execute(
                sql.SQL("SELECT {} FROM {} TABLESAMPLE BERNOULLI (10) LIMIT %s").format(
                    _fields(KEY), sql.Identifier(TABLE)
                ),
                (sample_keys,),
            ).fetchall()
        self._keys = [(str(a).rstrip(), str(b).rstrip()) for a, b in rows]

    def _timed(self, conn: psycopg.Connection[tuple[Any, ...]], query: sql.Composed, params: Sequence[Any]) -> int:
        started = time.monotonic()
        try:
            cursor = conn.execute(query, params, prepare=True)
            if cursor.description is not None:
                cursor.fetchall()
            return cursor.rowcount
        finally:
            with self._lock:
                self.samples.append((started, time.monotonic() - started))

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _pick(self, rng: random.Random) -> tuple[str, str] | None:
        with self._lock:
            return rng.choice(self._keys) if self._keys else None

    def _write(self, conn: psycopg.Connection[tuple[Any, ...]], rng: random.Random) -> None:
        n = self._next()
        roll = rng.random()
        key = self._pick(rng)
        if key is None or roll < 0.4:  # a new execution; one in eight an existing key (DO NOTHING)
            if key is None or roll >= 0.05:
                key = (f"witness-namespace-{n % NAMESPACES}", str(uuid.uuid4()))
            query, params = insert_statement(), visibility_row(*key, version=n, n=n)
        elif roll < 0.85:  # an update; one in nine carries a stale version (the guard keeps the row)
            version = 0 if roll >= 0.8 else time.time_ns()
            query, params = upsert_statement(), visibility_row(*key, version=version, n=n)
        else:
            query, params = delete_statement(), key
        with conn.transaction():
            self._timed(conn, query, params)
            self._timed(conn, record_statement(self.columns), (*key, *key))
        with self._lock:
            self.writes += 1
            if roll >= 0.85 and key in self._keys:  # another writer may have deleted it first
                self._keys.remove(key)
            elif roll < 0.4:
                self._keys.append(key)

    def _read(self, conn: psycopg.Connection[tuple[Any, ...]], rng: random.Random) -> None:
        key = self._pick(rng)
        if rng.random() < 0.5 and key is not None:
            self._timed(conn, get_statement(), key)
        else:
            namespace = key[0] if key is not None and rng.random() < 0.5 else f"witness-namespace-{rng.randrange(4)}"
            self._timed(conn, list_statement(), (namespace, PAGE_SIZE))

    def _worker(self, act: Callable[[psycopg.Connection[tuple[Any, ...]], random.Random], None], seed: int) -> None:
        rng = random.Random(seed)
        with self.connect() as conn:
            conn.prepare_threshold = 0  # every statement server-side prepared, like pgx
            if self.lock_wait is not None:
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{round(self.lock_wait * 1000)}ms",))
            while not self._stop.is_set():
                try:
                    act(conn, rng)
                except psycopg.Error as error:  # kept, and the load goes on
                    with self._lock:
                        self.errors.append(f"{type(error).__name__}: {error}".splitlines()[0])
                    if conn.closed:
                        return
                time.sleep(self.pause)

    def start(self) -> Load:
        if not self.columns:
            self.prepare()
        self._stop.clear()
        for i, act in enumerate([self._write] * self.writers + [self._read] * self.readers):
            thread = threading.Thread(target=self._worker, args=(act, i), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
        self._threads.clear()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# -- the comparison ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The table against its witness, row by row, and its generated columns against their expressions."""

    table_rows: int
    witness_rows: int
    table_md5: str
    witness_md5: str
    differing: int  # keys whose row differs, is missing from either side
    examples: tuple[tuple[str, ...], ...]  # up to ten of those keys
    generated: dict[str, int]  # generated column -> rows where it differs from its expression (only those > 0)

    @property
    def identical(self) -> bool:
        return (
            self.table_rows == self.witness_rows
            and self.table_md5 == self.witness_md5
            and self.differing == 0
            and not self.generated
        )

    def summary(self) -> str:
        return (
            f"table {self.table_rows} rows (md5 {self.table_md5}), witness {self.witness_rows} "
            f"(md5 {self.witness_md5}), {self.differing} differing keys {list(self.examples)}, "
            f"generated columns differing from their expression: {self.generated or 'none'}"
        )


def _aggregate(source: sql.Composable, row_md5: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT count(*), coalesce(md5(string_agg({}, '' ORDER BY {})), '') FROM {}").format(
        row_md5, _fields(KEY), source
    )


def generated_mismatches(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    """Per STORED generated column of the table: rows whose value is not its expression's (catalog text), cast
    to the column's type as the server stores it (a DECIMAL(20, 5) keeps 5 digits of the expression's value)."""
    columns = conn.execute(
        "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid), format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = %s::regclass AND a.attgenerated = 's' AND NOT a.attisdropped ORDER BY a.attnum",
        (TABLE,),
    ).fetchall()
    if not columns:
        return {}
    counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {} IS DISTINCT FROM ({})::{})").format(
            sql.Identifier(name), sql.SQL(expression), sql.SQL(type_name)
        )
        for name, expression, type_name in columns
    )
    row = conn.execute(sql.SQL("SELECT {} FROM {}").format(counts, sql.Identifier(TABLE))).fetchone()
    assert row is not None
    return {name: int(count) for (name, *_), count in zip(columns, row, strict=True) if count}


def compare(conn: psycopg.Connection[tuple[Any, ...]], columns: Sequence[str]) -> Comparison:
    """The table's rows (hashed over ``columns``, the load's ``columns``) against the witness's."""
    table = conn.execute(_aggregate(sql.Identifier(TABLE), row_hash(columns))).fetchone()
    witness = conn.execute(_aggregate(witness_name(), sql.Identifier("row_md5"))).fetchone()
    assert table is not None
    assert witness is not None
    differing = sql.SQL(
        "SELECT {key} FROM (SELECT {key}, {hash} AS row_md5 FROM {table}) t FULL JOIN {witness} w USING ({key})"
        " WHERE t.row_md5 IS DISTINCT FROM w.row_md5 ORDER BY {key}"
    ).format(key=_fields(KEY), hash=row_hash(columns), table=sql.Identifier(TABLE), witness=witness_name())
    keys = conn.execute(differing).fetchall()
    return Comparison(
        table_rows=int(table[0]),
        witness_rows=int(witness[0]),
        table_md5=str(table[1]),
        witness_md5=str(witness[1]),
        differing=len(keys),
        examples=tuple(tuple(str(value).rstrip() for value in key) for key in keys[:10]),
        generated=generated_mismatches(conn),
    )


def drop_witness(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Remove the witness schema (before a schema dump is compared with a clean install's)."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(WITNESS_SCHEMA)))
