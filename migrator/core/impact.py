"""What each pending statement will do to a live database: the table, the lock, rewrite/scan/catalog, the size.

Pure: derived from the vendor statement's text and the catalog's sizes (`migrator.core.sizes`), generic over
releases (no table or version is named here). The lock levels are PostgreSQL's (documentation, "Explicit
Locking", and the ALTER TABLE page): most ALTER TABLE forms take ACCESS EXCLUSIVE, which queues every reader
behind it; ``CREATE INDEX`` takes SHARE (blocks writes), ``CONCURRENTLY`` only SHARE UPDATE EXCLUSIVE.
What rewrites the whole table: a stored generated column, an identity or serial column, a default that calls
a volatile function, a column type change (unless the catalog shows a varchar or text column changing to a
text type at least as wide, which PostgreSQL does without a rewrite; an unknown old type counts as a rewrite:
a false alarm is cheaper than a surprise). What scans it under its lock: an index
build, ``SET NOT NULL``, a validated constraint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from migrator.core.sizes import Sizes, TableSize, pretty_rows, pretty_size
from migrator.core.statements import NAME_PATTERN, identifier, split_top_level
from migrator.core.vendor import VendorVersion

SHORT = 100
_FLAGS = re.IGNORECASE | re.DOTALL
_ON_TABLE = rf"\s+ON\s+(?:ONLY\s+)?({NAME_PATTERN})"
_CREATE_INDEX = re.compile(
    rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?({NAME_PATTERN})?{_ON_TABLE}", _FLAGS
)
_CREATE_TABLE = re.compile(rf"CREATE\s+(?:\w+\s+)*?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({NAME_PATTERN})", _FLAGS)
_DROP_TABLE = re.compile(rf"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?({NAME_PATTERN})", _FLAGS)
_DROP_INDEX = re.compile(rf"DROP\s+INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?({NAME_PATTERN})", _FLAGS)
_ALTER_TABLE = re.compile(rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?({NAME_PATTERN})\s+(.*?)\s*;?\s*$", _FLAGS)
_WRITE = re.compile(rf"(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?({NAME_PATTERN})", _FLAGS)
_ADD = re.compile(r"ADD\s+(?!CONSTRAINT\b|PRIMARY\b|UNIQUE\b|CHECK\b|FOREIGN\b|EXCLUDE\b)", _FLAGS)
_ADD_CONSTRAINT = re.compile(r"ADD\s+(?:CONSTRAINT\s+\S+\s+)?(PRIMARY|UNIQUE|CHECK|FOREIGN|EXCLUDE)\b", _FLAGS)
_REWRITING_COLUMN = re.compile(
    r"\bSTORED\b|\bAS\s+IDENTITY\b|\b(?:SMALL|BIG)?SERIAL\b"
    r"|\bDEFAULT\b.*\b(?:random|gen_random_uuid|uuid_generate_v\w+|clock_timestamp|timeofday|nextval)\s*\(",
    _FLAGS,
)
_TYPE_CHANGE = re.compile(r"ALTER\s+(?:COLUMN\s+)?(\S+)\s+(?:SET\s+DATA\s+)?TYPE\s+([^,]*?)\s*$", _FLAGS)
_TEXT_TYPE = re.compile(r"^(?:character\s+varying|varchar|text)\s*(?:\(\s*(\d+)\s*\))?$", _FLAGS)
_SET_NOT_NULL = re.compile(r"ALTER\s+(?:COLUMN\s+)?\S+\s+SET\s+NOT\s+NULL\b", _FLAGS)
_NOT_VALID = re.compile(r"\bNOT\s+VALID\b", _FLAGS)


class Lock(IntEnum):
    """PostgreSQL's table lock modes, weakest first (the order is their strength)."""

    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    ACCESS_EXCLUSIVE = 8

    def __str__(self) -> str:
        return self.name.replace("_", " ")

    @property
    def blocks_writes(self) -> bool:
        return self >= Lock.SHARE


class Effect(IntEnum):
    """What the statement does to the table's data, mildest first."""

    CATALOG = 1  # only the catalog changes: the lock is held for milliseconds (once granted)
    WRITE = 2  # rows are written, as the application writes them
    SCAN = 3  # the whole table is read (index build, SET NOT NULL, constraint validation)
    REWRITE = 4  # the whole table (and every index) is written anew

    def __str__(self) -> str:
        return self.name.lower()


_VERBS = {Effect.REWRITE: "rewrites", Effect.SCAN: "scans", Effect.WRITE: "writes to", Effect.CATALOG: "alters"}


@dataclass(frozen=True)
class StatementImpact:
    index: int
    statement: str
    table: str | None
    lock: Lock | None
    effect: Effect
    size: TableSize | None

    @property
    def heavy(self) -> bool:
        """A rewrite, or a scan under a lock that stops writes: what ``--max-rewrite-size`` guards."""
        return self.effect is Effect.REWRITE or (
            self.effect is Effect.SCAN and self.lock is not None and self.lock.blocks_writes
        )

    def what(self) -> str:
        """``rewrites executions_visibility (35.1M rows, 48 GB) under ACCESS EXCLUSIVE``."""
        return f"{_VERBS[self.effect]} {self.table} ({describe_size(self.size)}) under {self.lock}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "statement": self.statement,
            "table": self.table,
            "lock": str(self.lock) if self.lock else None,
            "effect": str(self.effect),
            "rows": self.size.rows if self.size else None,
            "bytes": self.size.bytes if self.size else None,
            "locked_by": self.size.locked_by if self.size else None,
        }


@dataclass(frozen=True)
class VersionImpact:
    version: str
    statements: tuple[StatementImpact, ...]

    @property
    def summary(self) -> str:
        """One line: the heaviest things the version does, each table once, heaviest first."""
        seen: set[tuple[str | None, Effect]] = set()
        phrases: list[str] = []
        for item in sorted(self.statements, key=lambda s: (-s.effect, -(s.lock or 0), s.index)):
            if item.table is None or item.effect < Effect.SCAN or (item.table, item.effect) in seen:
                continue
            seen.add((item.table, item.effect))
            phrases.append(item.what())
        if not self.statements:
            return f"v{self.version} runs no statement (a version bump only)"
        if not phrases:
            return f"v{self.version} changes the catalog only (short locks once granted)"
        return f"v{self.version} " + "; ".join(phrases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "summary": self.summary,
            "statements": [item.to_dict() for item in self.statements],
        }


def describe_size(size: TableSize | None) -> str:
    if size is None:
        return "not there yet"
    rows = "unknown rows (never analysed)" if size.rows is None else f"{pretty_rows(size.rows)} rows"
    if size.bytes is None:
        return f"{rows}, size unknown: locked by {size.locked_by}"
    return f"{rows}, {pretty_size(size.bytes)}"


def shorten(text: str, limit: int = SHORT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _widens_text(old: str | None, new: str) -> bool:
    """varchar(n) -> varchar(m >= n) or text, and text -> text: binary-coercible, no rewrite."""
    old_match, new_match = _TEXT_TYPE.match(old or ""), _TEXT_TYPE.match(new.strip())
    if not old_match or not new_match:
        return False
    old_width, new_width = old_match.group(1), new_match.group(1)
    return new_width is None or (old_width is not None and int(new_width) >= int(old_width))


def _alter_table(table: str, actions: str, column_types: dict[str, str]) -> tuple[Lock, Effect]:
    lock, effect = Lock.ACCESS_EXCLUSIVE, Effect.CATALOG
    for action in split_top_level(actions):
        if retyped := _TYPE_CHANGE.match(action):
            old = column_types.get(f"{table}.{identifier(retyped.group(1))}")
            if not _widens_text(old, retyped.group(2)):
                effect = max(effect, Effect.REWRITE)
        elif _ADD.match(action) and _REWRITING_COLUMN.search(action):
            effect = max(effect, Effect.REWRITE)
        elif (constraint := _ADD_CONSTRAINT.match(action)) and not _NOT_VALID.search(action):
            effect = max(effect, Effect.SCAN)
            if constraint.group(1).upper() == "FOREIGN" and len(split_top_level(actions)) == 1:
                lock = Lock.SHARE_ROW_EXCLUSIVE
        elif _SET_NOT_NULL.match(action):
            effect = max(effect, Effect.SCAN)
    return lock, effect


def classify(text: str, sizes: Sizes) -> tuple[str | None, Lock | None, Effect]:
    """(table, lock, effect) of one statement; procedural blocks and unknown forms touch no known table."""
    if match := _CREATE_INDEX.match(text):
        lock = Lock.SHARE_UPDATE_EXCLUSIVE if match.group(1) else Lock.SHARE
        return identifier(match.group(3)), lock, Effect.SCAN
    if match := _CREATE_TABLE.match(text):
        return identifier(match.group(1)), Lock.ACCESS_EXCLUSIVE, Effect.CATALOG
    if match := _DROP_TABLE.match(text):
        return identifier(match.group(1)), Lock.ACCESS_EXCLUSIVE, Effect.CATALOG
    if match := _DROP_INDEX.match(text):
        lock = Lock.SHARE_UPDATE_EXCLUSIVE if match.group(1) else Lock.ACCESS_EXCLUSIVE
        return sizes.index_tables.get(identifier(match.group(2))), lock, Effect.CATALOG
    if match := _ALTER_TABLE.match(text):
        table = identifier(match.group(1))
        return table, *_alter_table(table, match.group(2), sizes.column_types)
    if match := _WRITE.match(text):
        return identifier(match.group(1)), Lock.ROW_EXCLUSIVE, Effect.WRITE
    return None, None, Effect.CATALOG


def version_impact(version: VendorVersion, sizes: Sizes, skip: int = 0) -> VersionImpact:
    """Impact of the statements of ``version`` that will run (a repair skips the first ``skip``)."""
    items = []
    for number, statement in enumerate(version.statements, start=1):
        if number <= skip:
            continue
        table, lock, effect = classify(statement.text, sizes)
        size = sizes.tables.get(table) if table else None
        items.append(StatementImpact(number, shorten(statement.text), table, lock, effect, size))
    return VersionImpact(version.name, tuple(items))


def impact_report(pending: Sequence[VendorVersion], sizes: Sizes, applied: int = 0) -> list[VersionImpact]:
    """One entry per pending version; ``applied`` statements of the first one are already in place.

    An index that a pending version creates and a later one drops is not in the catalog yet: its table comes
    from the creating statement.
    """
    created = {
        identifier(match.group(2)): identifier(match.group(3))
        for version in pending
        for statement in version.statements
        if (match := _CREATE_INDEX.match(statement.text)) and match.group(2)
    }
    sizes = replace(sizes, index_tables={**created, **sizes.index_tables})
    return [version_impact(version, sizes, 0 if position else applied) for position, version in enumerate(pending)]


def too_large(report: Iterable[VersionImpact], limit: int | None) -> str | None:
    """The ``--max-rewrite-size`` refusal: the first heavy statement on a table larger than ``limit`` (if set)."""
    if limit is None:
        return None
    for version in report:
        for item in version.statements:
            if item.heavy and item.size is not None and (item.size.bytes is None or item.size.bytes > limit):
                larger = "whose size is not known to be within" if item.size.bytes is None else "larger than"
                return (
                    f"v{version.version} statement {item.index} ({item.statement}) {item.what()}, {larger} "
                    f"--max-rewrite-size {pretty_size(limit)}; run it in a maintenance window with a larger "
                    "--max-rewrite-size/MIGRATOR_MAX_REWRITE_SIZE (or unset it); changed nothing"
                )
    return None
