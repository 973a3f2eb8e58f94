"""What each pending statement will do to a live database: the table, the lock, rewrite/scan/catalog, the size.

Pure: derived from what the vendor statement touches (`migrator.core.statements`, the one parse of its text) and
the catalog's sizes (`migrator.core.sizes`), generic over
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
from migrator.core.statements import Change, Form, Statement, normal_type
from migrator.core.vendor import VendorVersion

SHORT = 100
_TEXT_TYPE = re.compile(r"^(?:varchar|text)(?:\((\d+)\))?$")


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
    online: bool = False  # the plan applies it online (a shadow swapped in, or an index built concurrently)

    @property
    def heavy(self) -> bool:
        """A rewrite, or a scan under a lock that stops writes, run plain: what ``--max-rewrite-size`` guards."""
        return not self.online and (
            self.effect is Effect.REWRITE
            or (self.effect is Effect.SCAN and self.lock is not None and self.lock.blocks_writes)
        )

    def what(self) -> str:
        """``rewrites executions_visibility (35.1M rows, 48 GB) under ACCESS EXCLUSIVE`` (or ``online, not
        under ACCESS EXCLUSIVE``)."""
        how = f"online, not under {self.lock}" if self.online else f"under {self.lock}"
        return f"{_VERBS[self.effect]} {self.table} ({describe_size(self.size)}) {how}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "statement": self.statement,
            "table": self.table,
            "lock": str(self.lock) if self.lock else None,
            "effect": str(self.effect),
            "online": self.online,
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
    """varchar(n) -> varchar(m >= n) or text, and text -> text: binary-coercible, no rewrite (types as
    `normal_type` writes them)."""
    old_match, new_match = _TEXT_TYPE.match(normal_type(old) if old else ""), _TEXT_TYPE.match(new)
    if not old_match or not new_match:
        return False
    old_width, new_width = old_match.group(1), new_match.group(1)
    return new_width is None or (old_width is not None and int(new_width) >= int(old_width))


def _alter_table(statement: Statement, column_types: dict[str, str]) -> tuple[Lock, Effect]:
    touch = statement.touch
    lock, effect = Lock.ACCESS_EXCLUSIVE, Effect.CATALOG
    for action in touch.actions:
        if action.change is Change.ALTER_TYPE:
            if not _widens_text(column_types.get(f"{touch.table}.{action.column}"), action.new_type):
                effect = max(effect, Effect.REWRITE)
        elif action.change is Change.ADD_COLUMN and action.rewrites:
            effect = max(effect, Effect.REWRITE)
        elif action.change is Change.ADD_CONSTRAINT and action.validated:
            effect = max(effect, Effect.SCAN)
            if action.foreign and len(touch.actions) == 1:
                lock = Lock.SHARE_ROW_EXCLUSIVE
        elif action.change is Change.SET_NOT_NULL:
            effect = max(effect, Effect.SCAN)
    return lock, effect


def classify(statement: Statement, sizes: Sizes) -> tuple[str | None, Lock | None, Effect]:
    """(table, lock, effect) of one statement; procedural blocks and unknown forms touch no known table."""
    touch = statement.touch
    match touch.form:
        case Form.CREATE_INDEX:
            return touch.table, Lock.SHARE_UPDATE_EXCLUSIVE if touch.concurrently else Lock.SHARE, Effect.SCAN
        case Form.CREATE_TABLE | Form.DROP_TABLE:
            return touch.table, Lock.ACCESS_EXCLUSIVE, Effect.CATALOG
        case Form.DROP_INDEX:
            lock = Lock.SHARE_UPDATE_EXCLUSIVE if touch.concurrently else Lock.ACCESS_EXCLUSIVE
            return sizes.index_tables.get(touch.index or ""), lock, Effect.CATALOG
        case Form.ALTER_TABLE:
            return touch.table, *_alter_table(statement, sizes.column_types)
        case Form.WRITE:
            return touch.table, Lock.ROW_EXCLUSIVE, Effect.WRITE
    return None, None, Effect.CATALOG


def version_impact(version: VendorVersion, sizes: Sizes, skip: int = 0) -> VersionImpact:
    """Impact of the statements of ``version`` that will run (a repair skips the first ``skip``)."""
    items = []
    for number, statement in enumerate(version.statements, start=1):
        if number <= skip:
            continue
        table, lock, effect = classify(statement, sizes)
        size = sizes.tables.get(table) if table else None
        items.append(StatementImpact(number, shorten(statement.text), table, lock, effect, size))
    return VersionImpact(version.name, tuple(items))


def impact_report(pending: Sequence[VendorVersion], sizes: Sizes, applied: int = 0) -> list[VersionImpact]:
    """One entry per pending version; ``applied`` statements of the first one are already in place.

    An index that a pending version creates and a later one drops is not in the catalog yet: its table comes
    from the creating statement.
    """
    created = {
        statement.touch.index: statement.touch.table
        for version in pending
        for statement in version.statements
        if statement.touch.form is Form.CREATE_INDEX and statement.touch.index and statement.touch.table
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
