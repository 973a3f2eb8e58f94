"""The SQL of an online rewrite, generated from a table's catalog description (`TableShape`): pure text.

The shadow must come out identical to what the vendor's ``ALTER TABLE`` leaves on the live table, down to the
catalog: columns in attnum order with placeholders for dropped ones (added, then dropped, at the same attlen and
attalign), their types, collations, defaults and generated expressions as the catalog prints them, storage,
compression, statistics targets and options, reloptions (TOAST's only once a toastable column exists), owner,
grants, comments, replica identity, ``CLUSTER ON``. Index and constraint names stay the live table's, as the
shadow is a table of the same name in `WORK_SCHEMA` (PostgreSQL 18's not-null constraint names follow the table
name, so they match too). The change log keeps each primary key column at its exact catalog type (a cast such as
``::character[]`` would cut ``char(n)`` keys to one character and silently lose changes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from migrator.core.online import RETIRED_SCHEMA, WORK_SCHEMA, Phase
from migrator.core.planner import quote_identifier

STATE = "state"
LOG = "log"
LOG_ID = "temporal_migrator_seq"  # the log's own order (a name no Temporal key column has)
CAPTURE = "temporal_migrator_capture"  # trigger and function
NO_TRUNCATE = "temporal_migrator_no_truncate"  # trigger and function
_HOLE = "temporal_migrator_dropped_"  # placeholder of a dropped column, dropped again at once

_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "x": "EXTENDED", "m": "MAIN"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}
_IDENTITY = {"d": "DEFAULT", "n": "NOTHING", "f": "FULL"}
# A type of each (attlen, attalign) a dropped column can have had: its placeholder takes the same room.
_PLACEHOLDER = {
    (-1, "i"): "text",
    (-1, "d"): "bigint[]",
    (-1, "c"): "bytea",  # no varlena type aligns on char; bytea's 'i' is as close as SQL allows
    (1, "c"): "boolean",
    (2, "s"): "smallint",
    (4, "i"): "integer",
    (8, "d"): "bigint",
    (16, "c"): "uuid",
    (12, "d"): "time with time zone",
    (16, "d"): "interval",
}


def quote_literal(text: str) -> str:
    """A string constant (standard_conforming_strings, on since PostgreSQL 9.1: a quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def qualified(schema: str, name: str) -> str:
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


@dataclass(frozen=True)
class Grant:
    """One privilege of one role (``PUBLIC`` for everyone), as ``aclexplode`` lists it."""

    grantee: str
    privilege: str  # SELECT, INSERT, ...
    grantable: bool

    def sql(self, target: str, column: str | None = None) -> str:
        who = "PUBLIC" if self.grantee == "PUBLIC" else quote_identifier(self.grantee)
        what = f"{self.privilege} ({quote_identifier(column)})" if column else self.privilege
        option = " WITH GRANT OPTION" if self.grantable else ""
        return f"GRANT {what} ON TABLE {target} TO {who}{option}"


@dataclass(frozen=True)
class Column:
    """One attnum of the table; a dropped one has only ``placeholder`` (its attlen and attalign) meaningful."""

    number: int
    name: str
    type: str  # format_type, schema-qualified where not in pg_catalog
    dropped: bool = False
    placeholder: tuple[int, str] = (-1, "i")  # (attlen, attalign) of a dropped column
    collation: str | None = None  # qualified, when not the type's default
    default: str | None = None  # pg_get_expr
    generated: str | None = None  # pg_get_expr of a STORED generated column
    not_null: bool = False
    storage: str | None = None  # attstorage, when not the type's default
    compression: str | None = None  # attcompression, when set
    statistics: int | None = None  # attstattarget, when set
    options: tuple[str, ...] = ()  # attoptions ("n_distinct=8")
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    def definition(self) -> str:
        if self.dropped:
            kind = _PLACEHOLDER.get(self.placeholder)
            if kind is None:
                raise ValueError(f"no placeholder type for a dropped column of attlen/attalign {self.placeholder}")
            return f"{quote_identifier(_HOLE + str(self.number))} {kind}"
        parts = [quote_identifier(self.name), self.type]
        if self.collation:
            parts.append(f"COLLATE {self.collation}")
        if self.generated is not None:
            parts.append(f"GENERATED ALWAYS AS ({self.generated}) STORED")
        elif self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if self.not_null:
            parts.append("NOT NULL")
        return " ".join(parts)


@dataclass(frozen=True)
class Index:
    """A valid index of the live table other than the primary key's, with what hangs on it."""

    name: str
    definition: str  # pg_get_indexdef
    comment: str | None = None
    clustered: bool = False
    replica_identity: bool = False


@dataclass(frozen=True)
class Publication:
    """A ``FOR TABLE`` publication listing the table, with its column list and row filter (15+)."""

    name: str
    columns: tuple[str, ...] = ()
    row_filter: str | None = None


@dataclass(frozen=True)
class TableShape:
    """The live table as the catalog describes it (read by `migrator.db.table`)."""

    schema: str
    name: str
    owner: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    key_types: tuple[str, ...]  # format_type of each key column, exact (``character(64)``, never ``character``)
    primary_constraint: str
    primary_definition: str  # pg_get_constraintdef: PRIMARY KEY (...) [INCLUDE ...] [WITH (...)]
    primary_comment: str | None = None
    primary_clustered: bool = False
    primary_replica_identity: bool = False
    reloptions: tuple[str, ...] = ()
    toast_options: tuple[str, ...] = ()
    replica_identity: str = "d"  # relreplident
    acl: tuple[Grant, ...] | None = None  # None: the default privileges (relacl NULL)
    comment: str | None = None
    indexes: tuple[Index, ...] = ()
    publications: tuple[Publication, ...] = ()

    @property
    def live(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def shadow(self) -> str:
        return qualified(WORK_SCHEMA, self.name)

    @property
    def retired(self) -> str:
        return qualified(RETIRED_SCHEMA, self.name)

    @property
    def copied(self) -> tuple[str, ...]:
        """The columns a copy carries: the generated ones are recomputed by the shadow."""
        return tuple(c.name for c in self.columns if not c.dropped and c.generated is None)


def digest(statements: tuple[str, ...]) -> str:
    """Which statements a rewrite in progress applies: a resume with others is refused."""
    return hashlib.sha256("\x00".join(statements).encode()).hexdigest()


def _names(names: tuple[str, ...], prefix: str = "") -> str:
    return ", ".join(prefix + quote_identifier(name) for name in names)


def _work(name: str) -> str:
    return qualified(WORK_SCHEMA, name)


# -- capture -------------------------------------------------------------------------------------------


def setup_statements(shape: TableShape, versions: tuple[str, ...], statements_digest: str) -> list[str]:
    """Both schemas, the state row, the log and the trigger functions: one transaction, so the work schema never
    exists without its state row."""
    key = ", ".join(
        f"{quote_identifier(name)} {kind} NOT NULL"
        for name, kind in zip(shape.primary_key, shape.key_types, strict=True)
    )
    versions_array = "ARRAY[" + ", ".join(quote_literal(v) for v in versions) + "]::text[]"
    names = _names(shape.primary_key)

    def logged(record: str) -> str:
        return f"INSERT INTO {_work(LOG)} ({names}) VALUES ({_names(shape.primary_key, record + '.')});"

    changed = " OR ".join(
        f"OLD.{quote_identifier(name)} IS DISTINCT FROM NEW.{quote_identifier(name)}" for name in shape.primary_key
    )
    capture = (
        f"CREATE FUNCTION {_work(CAPTURE)}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp AS $body$\nBEGIN\n"
        f"  IF TG_OP <> 'INSERT' THEN {logged('OLD')} END IF;\n"
        f"  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ({changed})) THEN {logged('NEW')} END IF;\n"
        "  RETURN NULL;\nEND\n$body$"
    )
    refuse = (
        f"CREATE FUNCTION {_work(NO_TRUNCATE)}() RETURNS trigger LANGUAGE plpgsql "
        "SET search_path = pg_catalog, pg_temp AS $body$\nBEGIN\n"
        "  RAISE EXCEPTION 'TRUNCATE of % is refused while temporal-migrator rewrites it online "
        "(finish or abort the rewrite first)', TG_TABLE_NAME USING ERRCODE = 'object_in_use';\nEND\n$body$"
    )
    return [
        f"CREATE SCHEMA {quote_identifier(WORK_SCHEMA)}",
        f"CREATE SCHEMA {quote_identifier(RETIRED_SCHEMA)}",
        # a key: under a FOR ALL TABLES publication (allowed by the operator) an update needs a replica identity
        f"CREATE TABLE {_work(STATE)} (table_name text PRIMARY KEY, versions text[] NOT NULL, phase text NOT NULL, "
        "store_schema text NOT NULL, statements_digest text NOT NULL, resume_key text[], "
        "rows_copied bigint NOT NULL DEFAULT 0, indexes_built integer NOT NULL DEFAULT 0, "
        "started_at timestamptz NOT NULL DEFAULT now())",
        f"INSERT INTO {_work(STATE)} (table_name, versions, phase, store_schema, statements_digest) VALUES "
        f"({quote_literal(shape.name)}, {versions_array}, {quote_literal(Phase.CAPTURE.value)}, "
        f"{quote_literal(shape.schema)}, {quote_literal(statements_digest)})",
        f"CREATE TABLE {_work(LOG)} ({quote_identifier(LOG_ID)} bigserial PRIMARY KEY, {key})",
        capture,
        refuse,
    ]


def trigger_statements(shape: TableShape) -> list[str]:
    """The capture trigger and the TRUNCATE refusal, ``ENABLE ALWAYS`` (a session with
    ``session_replication_role = replica``, a logical subscriber's apply worker, would otherwise bypass them)."""
    return [
        f"CREATE TRIGGER {quote_identifier(CAPTURE)} AFTER INSERT OR UPDATE OR DELETE ON {shape.live} "
        f"FOR EACH ROW EXECUTE FUNCTION {_work(CAPTURE)}()",
        f"CREATE TRIGGER {quote_identifier(NO_TRUNCATE)} BEFORE TRUNCATE ON {shape.live} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {_work(NO_TRUNCATE)}()",
        f"ALTER TABLE {shape.live} ENABLE ALWAYS TRIGGER {quote_identifier(CAPTURE)}",
        f"ALTER TABLE {shape.live} ENABLE ALWAYS TRIGGER {quote_identifier(NO_TRUNCATE)}",
    ]


def drop_trigger_statements(shape: TableShape) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {quote_identifier(name)} ON {shape.live}" for name in (CAPTURE, NO_TRUNCATE)]


# -- the shadow ----------------------------------------------------------------------------------------


def _options(options: tuple[str, ...]) -> str:
    """``name=value`` pairs as the catalog lists them, each value quoted (any reloption accepts a string)."""
    pairs = (option.split("=", 1) for option in options)
    return ", ".join(f"{name} = {quote_literal(value)}" for name, value in pairs)


def shadow_statements(shape: TableShape) -> list[str]:
    """The empty shadow, column by column, with everything that hangs on the table and its columns; the primary
    key is added by `key_statements` after the vendor's ALTERs (a clean install's key index comes first either
    way: it is the table's, built on the empty table)."""
    target = shape.shadow
    columns = ",\n  ".join(column.definition() for column in shape.columns)
    create = f"CREATE TABLE {target} (\n  {columns}\n)"
    if shape.reloptions:
        create += f" WITH ({_options(shape.reloptions)})"
    out = [create]
    out += [
        f"ALTER TABLE {target} DROP COLUMN {quote_identifier(_HOLE + str(c.number))}"
        for c in shape.columns
        if c.dropped
    ]
    if shape.toast_options:  # only now: a column-less table has no TOAST table to carry them
        out.append(f"ALTER TABLE {target} SET ({_options(tuple('toast.' + o for o in shape.toast_options))})")
    for column in shape.columns:
        if column.dropped:
            continue
        name = quote_identifier(column.name)
        if column.storage:
            out.append(f"ALTER TABLE {target} ALTER COLUMN {name} SET STORAGE {_STORAGE[column.storage]}")
        if column.compression:
            out.append(f"ALTER TABLE {target} ALTER COLUMN {name} SET COMPRESSION {_COMPRESSION[column.compression]}")
        if column.statistics is not None:
            out.append(f"ALTER TABLE {target} ALTER COLUMN {name} SET STATISTICS {column.statistics}")
        if column.options:
            out.append(f"ALTER TABLE {target} ALTER COLUMN {name} SET ({_options(column.options)})")
    out.append(f"ALTER TABLE {target} SET (autovacuum_enabled = false)")  # until the swap: see `swap_statements`
    out.append(f"ALTER TABLE {target} OWNER TO {quote_identifier(shape.owner)}")
    out += _grants(shape)
    if shape.comment is not None:
        out.append(f"COMMENT ON TABLE {target} IS {quote_literal(shape.comment)}")
    for column in shape.columns:
        if not column.dropped and column.comment is not None:
            out.append(f"COMMENT ON COLUMN {target}.{quote_identifier(column.name)} IS {quote_literal(column.comment)}")
    return out


def _grants(shape: TableShape) -> list[str]:
    """Table and column grants. A table's explicit ACL starts from the owner's defaults: the owner's own entries
    are revoked and granted back as listed, so revoked owner rights stay revoked."""
    target = shape.shadow
    out: list[str] = []
    if shape.acl is not None:
        out.append(f"REVOKE ALL ON TABLE {target} FROM {quote_identifier(shape.owner)}")
        out += [grant.sql(target) for grant in shape.acl]
    for column in shape.columns:
        out += [grant.sql(target, column.name) for grant in column.grants]
    return out


def key_statements(shape: TableShape) -> list[str]:
    """The primary key under its own name, before the copy (the copy's keyset and ON CONFLICT need it)."""
    out = [
        f"ALTER TABLE {shape.shadow} ADD CONSTRAINT {quote_identifier(shape.primary_constraint)} "
        f"{shape.primary_definition}"
    ]
    if shape.primary_comment is not None:
        out.append(f"COMMENT ON INDEX {_work(shape.primary_constraint)} IS {quote_literal(shape.primary_comment)}")
    return out


def index_statements(index: Index, definition: str) -> list[str]:
    """One existing valid index (``definition``: its own, retargeted to the shadow) with its comment."""
    out = [definition]
    if index.comment is not None:
        out.append(f"COMMENT ON INDEX {_work(index.name)} IS {quote_literal(index.comment)}")
    return out


def finish_statements(shape: TableShape) -> list[str]:
    """Once every index is built: CLUSTER ON and the replica identity, which name an index."""
    target = shape.shadow
    out: list[str] = []
    clustered = shape.primary_constraint if shape.primary_clustered else None
    clustered = next((index.name for index in shape.indexes if index.clustered), clustered)
    if clustered:
        out.append(f"ALTER TABLE {target} CLUSTER ON {quote_identifier(clustered)}")
    if shape.replica_identity == "i":
        chosen = shape.primary_constraint if shape.primary_replica_identity else None
        chosen = next((index.name for index in shape.indexes if index.replica_identity), chosen)
        if chosen is None:
            raise ValueError("replica identity USING INDEX names no index of the table")
        out.append(f"ALTER TABLE {target} REPLICA IDENTITY USING INDEX {quote_identifier(chosen)}")
    elif shape.replica_identity != "d":
        out.append(f"ALTER TABLE {target} REPLICA IDENTITY {_IDENTITY[shape.replica_identity]}")
    return out


# -- copy and catch-up ----------------------------------------------------------------------------------


def _key_tuple(shape: TableShape, prefix: str = "") -> str:
    return "(" + _names(shape.primary_key, prefix) + ")"


def copy_batch(shape: TableShape, *, first: bool, rows: int) -> str:
    """One keyset batch into the shadow, committing its resume key (the last key copied, as text) and the count
    in the state row in the same statement; returns (rows in the batch,). ``first``: no resume key yet."""
    columns = _names(shape.copied)
    order = _names(shape.primary_key)
    saved = ", ".join(f"(resume_key[{n}])::{kind}" for n, kind in enumerate(shape.key_types, start=1))
    where = "" if first else f" WHERE {_key_tuple(shape)} > (SELECT {saved} FROM {_work(STATE)})"
    last = ", ".join(f"{quote_identifier(name)}::text" for name in shape.primary_key)
    descending = ", ".join(f"{quote_identifier(name)} DESC" for name in shape.primary_key)
    return (
        f"WITH batch AS (SELECT {columns} FROM {shape.live}{where} ORDER BY {order} LIMIT {int(rows)}), "
        f"copied AS (INSERT INTO {shape.shadow} ({columns}) SELECT {columns} FROM batch ON CONFLICT DO NOTHING) "
        f"UPDATE {_work(STATE)} SET resume_key = coalesce((SELECT ARRAY[{last}] FROM batch ORDER BY {descending} "
        "LIMIT 1), resume_key), rows_copied = rows_copied + (SELECT count(*) FROM batch) "
        "RETURNING (SELECT count(*) FROM batch)"
    )


def replay_bound(limit: int | None) -> str:
    """The last log id of the next replay round (its first ``limit`` entries; all with None) and the backlog."""
    if limit is None:
        return f"SELECT max({quote_identifier(LOG_ID)}), count(*) FROM {_work(LOG)}"
    return (
        f"SELECT max({quote_identifier(LOG_ID)}), (SELECT count(*) FROM {_work(LOG)}) FROM "
        f"(SELECT {quote_identifier(LOG_ID)} FROM {_work(LOG)} ORDER BY 1 LIMIT {int(limit)}) AS round"
    )


def backlog_count() -> str:
    return f"SELECT count(*) FROM {_work(LOG)}"


def replay_statements(shape: TableShape) -> list[str]:
    """Re-sync every key logged up to ``%s`` (a log id): delete it from the shadow, insert it again from the live
    table's current row (none if deleted), forget it. Idempotent; run in one snapshot (REPEATABLE READ, or under
    the swap's lock) so a change committed meanwhile stays in the log for the next round."""
    match = " AND ".join(f"s.{quote_identifier(n)} = l.{quote_identifier(n)}" for n in shape.primary_key)
    columns = _names(shape.copied)
    bound = f"{quote_identifier(LOG_ID)} <= %s"
    return [
        f"DELETE FROM {shape.shadow} AS s USING {_work(LOG)} AS l WHERE l.{bound} AND {match}",
        f"INSERT INTO {shape.shadow} ({columns}) SELECT {columns} FROM {shape.live} "
        f"WHERE {_key_tuple(shape)} IN (SELECT {_names(shape.primary_key)} FROM {_work(LOG)} WHERE {bound})",
        f"DELETE FROM {_work(LOG)} WHERE {bound}",
    ]


# -- swap, cleanup, abort --------------------------------------------------------------------------------


def publication_statements(shape: TableShape) -> list[str]:
    out = []
    for publication in shape.publications:
        text = f"ALTER PUBLICATION {quote_identifier(publication.name)} ADD TABLE {shape.live}"
        if publication.columns:
            text += f" ({_names(publication.columns)})"
        if publication.row_filter:
            text += f" WHERE ({publication.row_filter})"
        out.append(text)
    return out


def _reloptions_restored(shape: TableShape) -> list[str]:
    """The shadow's reloptions back to the live table's, in their order: the shadow ran without autovacuum, whose
    lock the swap would otherwise wait out (PostgreSQL cancels autovacuum for a lock waiter only after
    deadlock_timeout) while it holds the live table; the engine analyzes the shadow itself."""
    names = sorted({option.split("=", 1)[0] for option in shape.reloptions} | {"autovacuum_enabled"})
    out = [f"ALTER TABLE {shape.shadow} RESET ({', '.join(names)})"]
    if shape.reloptions:
        out.append(f"ALTER TABLE {shape.shadow} SET ({_options(shape.reloptions)})")
    return out


def swap_statements(shape: TableShape) -> list[str]:
    """After `LOCK` and the last replay, in the same transaction: the live table retires, the shadow takes its
    place (indexes and constraints move with each) with its reloptions the live table's, publications list the
    new table, the phase is cleanup."""
    return [
        *_reloptions_restored(shape),
        *(f"DROP TRIGGER {quote_identifier(name)} ON {shape.live}" for name in (CAPTURE, NO_TRUNCATE)),
        f"ALTER TABLE {shape.live} SET SCHEMA {quote_identifier(RETIRED_SCHEMA)}",
        f"ALTER TABLE {shape.shadow} SET SCHEMA {quote_identifier(shape.schema)}",
        *publication_statements(shape),
        set_phase(Phase.CLEANUP),
    ]


def set_phase(phase: Phase) -> str:
    return f"UPDATE {_work(STATE)} SET phase = {quote_literal(phase.value)}"


def lock_statements(shape: TableShape) -> tuple[str, str]:
    """(the shadow's lock, the live table's): the swap takes them in this order."""
    return f"LOCK TABLE {shape.shadow} IN ACCESS EXCLUSIVE MODE", f"LOCK TABLE {shape.live} IN ACCESS EXCLUSIVE MODE"


def remove_statements(schema: str, table: str, *, retired: bool) -> list[str]:
    """Every trace of the rewrite: the triggers first (a trigger left without its log would fail every write to
    the table), then the shadow (or, ``retired``, after a swap, the old table), the log, functions, state,
    schemas. ``IF EXISTS`` throughout: a run killed anywhere leaves a prefix of what setup created."""
    live = qualified(schema, table)
    out = [f"DROP TRIGGER IF EXISTS {quote_identifier(name)} ON {live}" for name in (CAPTURE, NO_TRUNCATE)]
    if retired:
        out = [f"DROP TABLE IF EXISTS {qualified(RETIRED_SCHEMA, table)}"]
    else:
        out.append(f"DROP TABLE IF EXISTS {qualified(WORK_SCHEMA, table)}")
    return [
        *out,
        f"DROP TABLE IF EXISTS {_work(LOG)}",
        f"DROP FUNCTION IF EXISTS {_work(CAPTURE)}()",
        f"DROP FUNCTION IF EXISTS {_work(NO_TRUNCATE)}()",
        f"DROP TABLE IF EXISTS {_work(STATE)}",
        f"DROP SCHEMA IF EXISTS {quote_identifier(WORK_SCHEMA)}",
        f"DROP SCHEMA IF EXISTS {quote_identifier(RETIRED_SCHEMA)}",
    ]


# -- decisions -------------------------------------------------------------------------------------------


class Backlog(StrEnum):
    """What the catch-up does next, from the backlog after each round."""

    SWAP = "swap"  # small enough to replay under the swap's lock
    CONTINUE = "continue"
    DIVERGING = "diverging"  # not shrinking: writes outpace the replay


def judge_backlog(history: tuple[int, ...], *, small: int, patience: int) -> Backlog:
    """``history``: the backlog after each round so far. Swap once it is ``small``; give up when the last
    ``patience`` rounds have not brought it below the lowest seen before them."""
    if history and history[-1] <= small:
        return Backlog.SWAP
    if len(history) > patience and min(history[-patience:]) >= min(history[:-patience]):
        return Backlog.DIVERGING
    return Backlog.CONTINUE


MIN_SWAP_BACKLOG = 10


def swap_backlog(keys_per_second: float, budget: float) -> int:
    """How many captured keys the swap may leave to replay under its lock: what the measured replay rate does in
    half of ``budget`` (the tolerated stall less the lock wait), the other half a margin for the keys that come
    in between the last round and the lock. An unmeasured rate (nothing replayed yet) allows the minimum."""
    return max(MIN_SWAP_BACKLOG, int(keys_per_second * max(budget, 0.0) / 2))


def swap_lock_timeout(ddl_lock_timeout: float, max_stall: float) -> float:
    """How long the swap waits for its lock: half the tolerated stall (the replay under the lock takes the rest),
    and never longer than --ddl-lock-timeout (0 there means no limit)."""
    half = max_stall / 2
    return half if ddl_lock_timeout <= 0 else min(ddl_lock_timeout, half)
